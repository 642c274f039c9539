package bench

import (
	"strings"
	"testing"
	"time"
)

func TestNormalizeDefaults(t *testing.T) {
	const url = "ws://127.0.0.1:9000/ws/"
	tests := []struct {
		in   Options
		want Options
	}{
		{Options{Mode: ModeIdle, URL: url}, Options{Conns: 1000, Payload: 16, Duration: 5 * time.Second, Sources: 1}},
		{Options{Mode: ModeRate, URL: url}, Options{Conns: 100, Rate: 1000, Payload: 128, Duration: 10 * time.Second, Sources: 1}},
		{Options{Mode: ModeClosed, URL: url}, Options{Conns: 50, Payload: 128, Duration: 10 * time.Second, Sources: 1}},
		{Options{Mode: ModeHandshake, URL: url}, Options{Conns: 16, Payload: 16, Duration: 10 * time.Second, Sources: 16}},
		{Options{Mode: ModeBulk, URL: url}, Options{Conns: 4, Payload: 1 << 20, Duration: 10 * time.Second, Sources: 1}},
		// Given values stay.
		{Options{Mode: ModeRate, URL: url, Conns: 7, Rate: 3.5, Payload: 1, Duration: time.Second, Warmup: time.Second, Timeout: time.Second, Sources: 3},
			Options{Conns: 7, Rate: 3.5, Payload: 1, Duration: time.Second, Warmup: time.Second, Timeout: time.Second, Sources: 3}},
		// One source per 10,000 connections.
		{Options{Mode: ModeIdle, URL: url, Conns: 50_000}, Options{Conns: 50_000, Payload: 16, Duration: 5 * time.Second, Sources: 5}},
		// Handshake: 1,000 cycles/s per worker assumed, at least 8 sources.
		{Options{Mode: ModeHandshake, URL: url, Conns: 64, Duration: 10 * time.Second, Warmup: 5 * time.Second}, Options{Conns: 64, Payload: 16, Duration: 10 * time.Second, Warmup: 5 * time.Second, Sources: 96}},
		{Options{Mode: ModeHandshake, URL: url, Conns: 2, Duration: 10 * time.Second}, Options{Conns: 2, Payload: 16, Duration: 10 * time.Second, Sources: 8}},
		// Idle has no warmup.
		{Options{Mode: ModeIdle, URL: url, Warmup: time.Second}, Options{Conns: 1000, Payload: 16, Duration: 5 * time.Second, Sources: 1}},
		// No source addresses for a target off loopback.
		{Options{Mode: ModeRate, URL: "ws://10.1.2.3:80/"}, Options{Conns: 100, Rate: 1000, Payload: 128, Duration: 10 * time.Second}},
		{Options{Mode: ModeRate, URL: "ws://localhost:80/"}, Options{Conns: 100, Rate: 1000, Payload: 128, Duration: 10 * time.Second, Sources: 1}},
	}
	for _, tt := range tests {
		o := tt.in
		if err := o.Normalize(); err != nil {
			t.Errorf("%+v: %v", tt.in, err)
			continue
		}
		w := tt.want
		if w.Timeout == 0 {
			w.Timeout = DefaultTimeout
		}
		if o.Conns != w.Conns || o.Rate != w.Rate || o.Payload != w.Payload || o.Duration != w.Duration ||
			o.Warmup != w.Warmup || o.Timeout != w.Timeout || o.Sources != w.Sources {
			t.Errorf("%s %s: got conns %d rate %v payload %d duration %v warmup %v timeout %v sources %d\nwant %+v",
				tt.in.Mode, tt.in.URL, o.Conns, o.Rate, o.Payload, o.Duration, o.Warmup, o.Timeout, o.Sources, w)
		}
	}
}

func TestNormalizeErrors(t *testing.T) {
	ok := Options{Mode: ModeRate, URL: "ws://127.0.0.1:9000/"}
	tests := []struct {
		name string
		edit func(o *Options)
		want string
	}{
		{"unknown mode", func(o *Options) { o.Mode = "flood" }, `unknown mode "flood" (want one of idle, rate, closed, handshake or bulk)`},
		{"no URL", func(o *Options) { o.URL = "" }, "want ws://HOST:PORT/PATH"},
		{"http URL", func(o *Options) { o.URL = "http://127.0.0.1:80/" }, "want ws://HOST:PORT/PATH"},
		{"http URL", func(o *Options) { o.URL = "http://127.0.0.1:80/" }, "want ws://HOST:PORT/PATH or wss://"},
		{"no port", func(o *Options) { o.URL = "ws://127.0.0.1/" }, "host and port are required"},
		{"no host", func(o *Options) { o.URL = "ws://:80/" }, "host and port are required"},
		{"fragment", func(o *Options) { o.URL = "ws://127.0.0.1:80/#x" }, "fragment"},
		{"bad URL", func(o *Options) { o.URL = "ws://[::1" }, "URL"},
		{"negative conns", func(o *Options) { o.Conns = -1 }, "conns -1: want 1 or more"},
		{"negative rate", func(o *Options) { o.Rate = -5 }, "rate -5"},
		{"rate outside rate mode", func(o *Options) { o.Mode, o.Rate = ModeClosed, 10 }, "rate is for rate mode only"},
		{"negative payload", func(o *Options) { o.Payload = -1 }, "payload -1 bytes"},
		{"payload over 64 MiB", func(o *Options) { o.Payload = MaxPayload + 1 }, "want 0..67108864 (64 MiB)"},
		{"negative duration", func(o *Options) { o.Duration = -time.Second }, "duration -1s: want > 0"},
		{"negative warmup", func(o *Options) { o.Warmup = -time.Second }, "warmup"},
		{"negative timeout", func(o *Options) { o.Timeout = -time.Second }, "timeout"},
		{"too many sources", func(o *Options) { o.Sources = MaxSources + 1 }, "sources"},
		{"sources off loopback", func(o *Options) { o.URL, o.Sources = "ws://192.0.2.1:80/", 2 }, "only reach a loopback target"},
	}
	for _, tt := range tests {
		o := ok
		tt.edit(&o)
		err := o.Normalize()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}
