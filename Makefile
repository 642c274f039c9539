# sluice — build, run, test.
#   make run    build sluice and the demo echo backend; start both (Ctrl-C stops both)
#   make test   gofmt check, go vet, staticcheck, go test -race (fuzz seeds included)

GO          ?= go
BIN         := bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
STATICCHECK := $(BIN)/staticcheck
ECHO_ADDR   ?= 127.0.0.1:9000

.PHONY: all build run test fmt-check vet staticcheck unit bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sluice ./cmd/sluice
	$(GO) build -trimpath -o $(BIN)/echo ./examples/echo

# The echo backend runs in the background for as long as sluice runs in the
# foreground; the trap stops it (by its PID) however sluice exits.
run: build
	@$(BIN)/echo -listen $(ECHO_ADDR) -quiet & echo_pid=$$!; \
	trap 'kill $$echo_pid 2>/dev/null' EXIT INT TERM; \
	sleep 0.3; \
	echo "sluice: ws://127.0.0.1:8080/ws/ -> echo backend on $(ECHO_ADDR) (Ctrl-C to stop)"; \
	$(BIN)/sluice

test: fmt-check vet staticcheck unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

$(STATICCHECK):
	GOBIN=$(CURDIR)/$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.6.1

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

# Unit, integration and fuzz-seed tests under the race detector. The
# 5,000-tunnel test keeps no goroutine per connection in the test process
# (sluice and the echo backend run as child processes), so it stays far
# below the race detector's 8,128-goroutine limit and runs here too.
unit:
	$(GO) test -race -count=1 -timeout 20m ./...

bench:
	$(GO) test -run XXX -bench . -benchmem ./handshake/ ./splice/ ./upstream/

clean:
	rm -rf $(BIN)
