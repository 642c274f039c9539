package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usageText = `Usage: sluice bench MODE [flags] ws[s]://HOST:PORT/PATH

Generates WebSocket load against a proxy, or any WebSocket server that
echoes every message, and reports throughput, latency and errors.

Modes:
  idle       open -c tunnels, check each echoes, hold them for -d, check again
  rate       send -r messages/s in total, spread evenly over -c connections
             (open loop: latency counts from each message's scheduled time)
  closed     one message in flight per connection: send, await the echo, repeat
  handshake  -c workers loop: connect, upgrade, echo -p bytes, close
  bulk       stream -p byte messages over -c connections as fast as they go

Defaults    conns  rate    payload  duration
  idle       1000  -       16 B     5s
  rate        100  1000/s  128 B    10s
  closed       50  -       128 B    10s
  handshake    16  -       16 B     10s
  bulk          4  -       1 MiB    10s

Flags:
  -c, --conns N        connections (idle: tunnels; handshake: workers)
  -r, --rate N         total messages per second (rate mode only)
  -p, --payload SIZE   message size: 128, 16k, 16KiB, 1m, 1MiB (k = 1024)
  -d, --duration D     measured window (idle: how long tunnels are held): 10s, 1m
      --warmup D       load before the window, not recorded (default 0)
      --sources N      loopback source addresses 127.0.0.2... to spread over
                       (default: one per 10,000 connections; 8+ for handshake)
      --timeout D      bound on each connect, upgrade and echo (default 10s)
      --host NAME      Host header (default: HOST:PORT of the URL)
      --origin URL     Origin header (default: none)
      --ca FILE        wss://: trust the PEM certificates in FILE (default: system roots)
      --insecure       wss://: do not verify the server's certificate
      --json           print the result as JSON instead of a table
  -q, --quiet          no progress display on stderr

Exit status: 0 when the run completed (its errors are in the report), 1 when
no message was echoed or the run failed, 2 for a usage error.

Examples:
  sluice bench rate -c 100 -r 2000 -d 30s ws://127.0.0.1:8080/ws/
  sluice bench idle -c 10000 -d 1m ws://127.0.0.1:8080/ws/
  sluice bench handshake --json ws://127.0.0.1:8080/ws/ > handshake.json
  sluice bench handshake --ca ca.pem wss://chat.example.com:443/ws/
`

// Command is `sluice bench MODE [flags] URL`. It returns the exit status:
// 0 when the run completed (the errors it met are in the report), 1 when
// it could not run or no message was echoed, 2 for a usage error (a usage
// message naming the modes goes to stderr). The result goes to stdout, the
// progress display to stderr. SIGINT or SIGTERM ends the run early and
// still prints what it measured; a second one kills the process.
func Command(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "sluice bench: missing MODE\n\n"+usageText)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return 0
	}
	mode := Mode(args[0])
	if _, ok := modeDefaults[mode]; !ok {
		fmt.Fprintf(stderr, "sluice bench: unknown mode %q (want %s)\n\n%s", args[0], modeList(), usageText)
		return 2
	}
	o, jsonOut, quiet, err := parseFlags(mode, args[1:], stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usageText)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "sluice bench: %v\n\n%s", err, usageText)
		return 2
	}
	if err := o.Normalize(); err != nil {
		fmt.Fprintf(stderr, "sluice bench: %v\n(sluice bench -h shows the flags)\n", err)
		return 2
	}
	if !quiet {
		o.Progress = stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // the next signal kills, as usual
	}()
	res, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "sluice bench: %v\n", err)
		return 1
	}
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "sluice bench: %v\n", err)
			return 1
		}
	} else {
		res.WriteTable(stdout)
	}
	if res.Echoed == 0 {
		fmt.Fprintf(stderr, "sluice bench: no message was echoed (errors: %s)\n", formatErrors(res.Errors))
		return 1
	}
	return 0
}

// parseFlags reads the flags and the one URL, in any order.
func parseFlags(mode Mode, args []string, stderr io.Writer) (o Options, jsonOut, quiet bool, err error) {
	o.Mode = mode
	fs := flag.NewFlagSet("sluice bench "+string(mode), flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned and reported once
	fs.Usage = func() {}
	for _, name := range []string{"c", "conns"} {
		fs.IntVar(&o.Conns, name, 0, "")
	}
	for _, name := range []string{"r", "rate"} {
		fs.Func(name, "", func(s string) error {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || v <= 0 || math.IsInf(v, 0) {
				return fmt.Errorf("want messages per second > 0")
			}
			o.Rate = v
			return nil
		})
	}
	for _, name := range []string{"p", "payload"} {
		fs.Func(name, "", func(s string) error {
			n, err := ParseSize(s)
			o.Payload = n
			return err
		})
	}
	for _, name := range []string{"d", "duration"} {
		fs.Func(name, "", durationFlag(&o.Duration))
	}
	fs.Func("warmup", "", durationFlag(&o.Warmup))
	fs.Func("timeout", "", durationFlag(&o.Timeout))
	fs.IntVar(&o.Sources, "sources", 0, "")
	fs.StringVar(&o.Host, "host", "", "")
	fs.StringVar(&o.Origin, "origin", "", "")
	var caFile string
	var insecure bool
	fs.StringVar(&caFile, "ca", "", "")
	fs.BoolVar(&insecure, "insecure", false, "")
	fs.BoolVar(&jsonOut, "json", false, "")
	fs.BoolVar(&quiet, "q", false, "")
	fs.BoolVar(&quiet, "quiet", false, "")

	var urls []string
	for {
		if err := fs.Parse(args); err != nil {
			return o, false, false, err
		}
		if fs.NArg() == 0 {
			break
		}
		urls = append(urls, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(urls) {
	case 0:
		return o, false, false, errors.New("missing the target URL (ws://HOST:PORT/PATH)")
	case 1:
		o.URL = urls[0]
	default:
		return o, false, false, fmt.Errorf("one target URL expected, got %d: %s", len(urls), strings.Join(urls, " "))
	}
	if o.Conns < 0 {
		return o, false, false, fmt.Errorf("-c %d: want 1 or more", o.Conns)
	}
	if caFile != "" || insecure {
		o.TLS = &tls.Config{InsecureSkipVerify: insecure}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return o, false, false, fmt.Errorf("--ca: %w", err)
			}
			o.TLS.RootCAs = x509.NewCertPool()
			if !o.TLS.RootCAs.AppendCertsFromPEM(pem) {
				return o, false, false, fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
			}
		}
	}
	return o, jsonOut, quiet, nil
}

// durationFlag parses a Go duration ("10s", "1m30s") or a bare number of
// seconds ("10"), which must be > 0.
func durationFlag(dst *time.Duration) func(string) error {
	return func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			n, nerr := strconv.ParseFloat(s, 64)
			if nerr != nil || n > math.MaxInt64/float64(time.Second) {
				return fmt.Errorf("want a duration such as 10s, 500ms or 2m")
			}
			d = time.Duration(n * float64(time.Second))
		}
		if d <= 0 {
			return fmt.Errorf("want a duration > 0")
		}
		*dst = d
		return nil
	}
}

// ParseSize reads a byte count: a number, optionally followed by k, m or
// g (binary units, k = 1024, as in nginx and sluice's config), optionally
// followed by B or iB, in any case: "128", "128B", "16k", "16KiB", "1m",
// "1MB", "1MiB". Options.Normalize bounds what a payload may be.
func ParseSize(s string) (int, error) {
	bad := fmt.Errorf("invalid size %q (want e.g. 128, 16k, 1MiB)", s)
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	mult := 1
	unit := strings.TrimSuffix(t, "i")
	if len(unit) > 0 {
		switch unit[len(unit)-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		}
	}
	if mult != 1 {
		t = unit[:len(unit)-1]
	} else if unit != t { // an "i" without a unit before it
		return 0, bad
	}
	if t == "" || strings.TrimLeft(t, "0123456789") != "" {
		return 0, bad
	}
	n, err := strconv.Atoi(t)
	if err != nil || n > math.MaxInt/mult {
		return 0, fmt.Errorf("invalid size %q (too large)", s)
	}
	return n * mult, nil
}
