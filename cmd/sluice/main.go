// Command sluice is a WebSocket-aware edge proxy.
//
//	sluice [flags]                 run (embedded default config unless --config or --proxy)
//	sluice check -c FILE           validate a config and exit (like nginx -t)
//	sluice reload -c FILE          make the running sluice reload its config (SIGHUP via pid_file)
//	sluice bench MODE [flags] URL  generate WebSocket load against a proxy (see package bench)
//	sluice version                 print the version
//
// This file is flags and wiring only; the work is in configs, engine and
// bench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-proxy/sluice/bench"
	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/engine"
)

// exitDrainIncomplete is the exit status of a shutdown that had to close
// tunnels without their close frames (1 is any other failure).
const exitDrainIncomplete = 3

// version is set at build time by the Makefile (-ldflags -X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "sluice %s\n", version)
			return 0
		case "check":
			return check(args[1:], stdout, stderr)
		case "reload":
			return reload(args[1:], stdout, stderr)
		case "bench":
			return bench.Command(args[1:], stdout, stderr)
		case "help":
			args = []string{"-h"}
		}
	}
	engine.Version = version
	return serve(args, stderr)
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o       configs.Overrides
		cfgPath string
	)
	fs.StringVar(&cfgPath, "config", "", "TOML config `FILE` (default: the embedded default, unless --proxy is given)")
	fs.StringVar(&cfgPath, "c", "", "short for --config")
	o.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  sluice [flags]\n  sluice check -c FILE\n  sluice reload -c FILE | --pid-file FILE\n  sluice bench MODE [flags] ws://HOST:PORT/PATH   (sluice bench -h)\n  sluice version\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sluice: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	// No --config: Apply builds the config from --proxy flags, or takes the
	// embedded default when there are none. A reload (SIGHUP) reads it the
	// same way again.
	load := func() (*configs.Config, error) {
		var base *configs.Config
		if cfgPath != "" {
			c, err := configs.Load(cfgPath)
			if err != nil {
				return nil, err
			}
			base = c
		}
		return configs.Apply(base, o)
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	logs, err := engine.NewLogs(cfg.Log)
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	defer func() { _ = logs.Error.Sync(); _ = logs.Access.Sync() }()
	eng, err := engine.New(cfg, logs)
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	// SIGTERM, SIGQUIT and SIGINT all drain gracefully (drain_timeout).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer stop()
	go reloadOnHUP(ctx, eng, logs, load)
	if cfg.PIDFile != "" {
		path := cfg.ResolvePath(cfg.PIDFile)
		pid := strconv.Itoa(os.Getpid())
		if err := os.WriteFile(path, []byte(pid+"\n"), 0o644); err != nil {
			fmt.Fprintf(stderr, "sluice: pid_file: %v\n", err)
			return 1
		}
		defer func() {
			// Only our own: a new sluice may have taken the file over.
			if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == pid {
				_ = os.Remove(path)
			}
		}()
	}
	if err := eng.Run(ctx); err != nil {
		logs.Error.Error("stopped: " + err.Error())
		if errors.Is(err, engine.ErrDrainIncomplete) {
			return exitDrainIncomplete
		}
		return 1
	}
	return 0
}

// reloadOnHUP reloads the config on every SIGHUP (nginx -s reload): the
// file is read and validated first, and a bad one leaves the running
// config in force, with the reason (file:line) in the error log; a good
// one applies to new connections while every tunnel runs on untouched
// (Engine.Reload), and reloads the TLS certificates and keys with it. When
// the config cannot be applied, the certificates are still re-read, so
// that a renewal never waits for a config fix. SIGUSR1 reopens the log
// files (nginx -s reopen), for logrotate.
func reloadOnHUP(ctx context.Context, eng *engine.Engine, logs engine.Logs, load func() (*configs.Config, error)) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sig)
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				if err := logs.Reopen(); err != nil {
					logs.Error.Error("log reopen failed: " + err.Error())
				} else {
					logs.Error.Info("log files reopened")
				}
				continue
			}
			start := time.Now()
			cfg, err := load()
			if err == nil {
				_, err = eng.Reload(cfg)
			}
			if err == nil {
				// Reload logged "config reloaded" with its own time; this is
				// the whole of it, reading and checking the file included.
				logs.Error.Info("reload done", zap.Duration("took", time.Since(start)))
				continue
			}
			logs.Error.Error("config not reloaded, the running one stays in force: " + err.Error())
			if err := eng.ReloadCertificates(); err != nil {
				logs.Error.Error("certificate reload failed, keeping the previous certificates: " + err.Error())
			} else {
				logs.Error.Info("certificates reloaded")
			}
		}
	}
}

// reload sends SIGHUP to the running sluice, found through its pid file
// (--pid-file, or pid_file of the config given with -c), as nginx -s
// reload does. The running process checks the config itself and keeps the
// old one if the new is bad: see its error log.
func reload(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath, pidPath string
	fs.StringVar(&cfgPath, "c", "", "config `FILE` whose pid_file names the process")
	fs.StringVar(&cfgPath, "config", "", "same as -c")
	fs.StringVar(&pidPath, "pid-file", "", "pid `FILE` of the running sluice")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if pidPath == "" && cfgPath != "" {
		cfg, err := configs.Load(cfgPath)
		if err != nil {
			fmt.Fprintf(stderr, "sluice: %v\n", err)
			return 1
		}
		if cfg.PIDFile == "" {
			fmt.Fprintf(stderr, "sluice: %s sets no pid_file: give --pid-file\n", cfgPath)
			return 2
		}
		pidPath = cfg.ResolvePath(cfg.PIDFile)
	}
	if pidPath == "" {
		fmt.Fprintln(stderr, "usage: sluice reload --pid-file FILE | -c CONFIG")
		return 2
	}
	b, err := os.ReadFile(pidPath)
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v (is sluice running?)\n", err)
		return 1
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		fmt.Fprintf(stderr, "sluice: %s holds no process ID\n", pidPath)
		return 1
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		fmt.Fprintf(stderr, "sluice: signal process %d from %s: %v\n", pid, pidPath, err)
		return 1
	}
	fmt.Fprintf(stdout, "sluice: sent SIGHUP to process %d; it logs whether the config was reloaded\n", pid)
	return 0
}

func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path string
	fs.StringVar(&path, "c", "", "config `FILE` to check")
	fs.StringVar(&path, "config", "", "same as -c")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if path == "" && fs.NArg() == 1 {
		path = fs.Arg(0)
	}
	if path == "" {
		fmt.Fprintln(stderr, "usage: sluice check -c FILE")
		return 2
	}
	cfg, err := configs.Load(path)
	if err == nil {
		_, err = engine.New(cfg, engine.Logs{})
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\nsluice: configuration file %s test failed\n", err, path)
		return 1
	}
	fmt.Fprintf(stdout, "sluice: configuration file %s test is successful\n", path)
	return 0
}
