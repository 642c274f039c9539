# sluice — build, run, test.
#   make run    build sluice and the demo backends (chat, echo); start all three:
#               the chat page at http://127.0.0.1:8080/ (Ctrl-C stops all)
#   make test   gofmt check, go vet, staticcheck, go test -race (fuzz seeds included),
#               then the full-size tests the race detector cannot carry
#   make bench-compare
#               sluice vs nginx vs HAProxy vs a direct connection, same loads,
#               one run; writes docs/BENCHMARKS.md and docs/bench/*.svg

GO          ?= go
BIN         := bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
STATICCHECK := $(BIN)/staticcheck
ECHO_ADDR   ?= 127.0.0.1:9000
CHAT_ADDR   ?= 127.0.0.1:9001

.PHONY: all build run test fmt-check vet staticcheck unit bench bench-compare clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sluice ./cmd/sluice
	$(GO) build -trimpath -o $(BIN)/echo ./examples/echo
	$(GO) build -trimpath -o $(BIN)/chat ./examples/chat

# The backends run in the background for as long as sluice runs in the
# foreground on its embedded default (configs/default.toml); the trap stops
# them (by their PIDs) however sluice exits.
run: build
	@$(BIN)/echo -listen $(ECHO_ADDR) -quiet & echo_pid=$$!; \
	$(BIN)/chat -listen $(CHAT_ADDR) -quiet & chat_pid=$$!; \
	trap 'kill $$echo_pid $$chat_pid 2>/dev/null' EXIT INT TERM; \
	sleep 0.3; \
	echo "sluice: open http://127.0.0.1:8080/ (chat; /ws/ -> $(CHAT_ADDR)); ws://127.0.0.1:8080/echo/ -> echo on $(ECHO_ADDR); metrics at http://127.0.0.1:9901/metrics. Ctrl-C stops all."; \
	$(BIN)/sluice --admin 127.0.0.1:9901

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
	@# Tests whose full size the race detector cannot carry (it slows the
	@# 10,000-connection churn of TestLimitConn to minutes), again without it.
	$(GO) test -count=1 -timeout 10m -run '^(TestLimitConn|TestPlainBodiesStream|TestReloadUnderLoad)$$' ./engine/

bench:
	$(GO) test -run XXX -bench . -benchmem ./handshake/ ./splice/ ./upstream/ ./bench/

# The comparison pins every proxy to CPU 0 with one worker/thread and the
# load generator and echo backend to CPU 1 (taskset), so each proxy gets the
# same CPU budget. nginx and HAProxy come from Debian when missing.
PROXY_CPU ?= 0
LOAD_CPU  ?= 1
COMPARE_FLAGS ?=
bench-compare: build
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || NEED="$$NEED nginx-light"; \
	command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || NEED="$$NEED haproxy"; \
	command -v taskset >/dev/null 2>&1 || NEED="$$NEED util-linux"; \
	if [ -n "$$NEED" ]; then \
		echo "bench-compare: installing$$NEED"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$NEED; \
	fi
	$(GO) build -trimpath -o $(BIN)/bench-compare ./bench/compare
	taskset -c $(LOAD_CPU) $(BIN)/bench-compare -sluice $(BIN)/sluice -echo $(BIN)/echo \
		-proxy-cpu $(PROXY_CPU) -load-cpu $(LOAD_CPU) -out docs $(COMPARE_FLAGS)

clean:
	rm -rf $(BIN)

# Plain HTTP, sluice vs nginx: a 1 KiB static file and a proxied GET, in
# requests per second and the proxy's CPU per request. The proxy under
# test runs alone on PROXY_CPU with one worker; wrk, the backend (another
# nginx) and the harness on LOAD_CPU. wrk and nginx come from Debian when
# missing. Writes the bench-http section of docs/BENCHMARKS.md and
# docs/bench/http-results.json. HTTP_FLAGS="-quick" tries it in ~30 s.
HTTP_FLAGS ?=
.PHONY: bench-http
bench-http:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sluice ./cmd/sluice
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || NEED="$$NEED nginx-light"; \
	command -v wrk >/dev/null 2>&1 || NEED="$$NEED wrk"; \
	command -v taskset >/dev/null 2>&1 || NEED="$$NEED util-linux"; \
	if [ -n "$$NEED" ]; then \
		echo "bench-http: installing$$NEED"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$NEED; \
	fi
	$(GO) build -trimpath -o $(BIN)/bench-http ./bench/httpcompare
	taskset -c $(LOAD_CPU) $(BIN)/bench-http -sluice $(BIN)/sluice \
		-proxy-cpu $(PROXY_CPU) -load-cpu $(LOAD_CPU) -out docs $(HTTP_FLAGS)
