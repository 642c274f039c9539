package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sluice-proxy/sluice/configs"
	"github.com/sluice-proxy/sluice/handshake"
	"github.com/sluice-proxy/sluice/splice"
	"github.com/sluice-proxy/sluice/upstream"
)

// Logs are the two logs an engine writes: the error log (levels) and the
// access log (one line per finished tunnel or refused handshake).
type Logs struct {
	Error  *zap.Logger
	Access *zap.Logger

	files []*fileSink // the logs that are files, for Reopen
}

// Reopen reopens every log that is a file, at its configured path: after
// logrotate (or an operator) moved the file away, the next lines go to a
// new file there (SIGUSR1, as nginx -s reopen). A file that cannot be
// opened keeps receiving lines at its old place; the error names it.
func (l Logs) Reopen() error {
	var errs []error
	for _, f := range l.files {
		if err := f.reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NewLogs builds both logs from the [log] section.
func NewLogs(c configs.Log) (Logs, error) {
	level, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return Logs{}, fmt.Errorf("log level %q: %w", c.Level, err)
	}
	var logs Logs
	errOut, err := logs.openSink(c.ErrorLog)
	if err != nil {
		return Logs{}, fmt.Errorf("error_log: %w", err)
	}
	logs.Error = zap.New(zapcore.NewCore(encoder(c.Format), errOut, level))
	if c.AccessLog == "off" {
		logs.Access = zap.NewNop()
		return logs, nil
	}
	accOut, err := logs.openSink(c.AccessLog)
	if err != nil {
		return Logs{}, fmt.Errorf("access_log: %w", err)
	}
	logs.Access = zap.New(zapcore.NewCore(encoder(c.Format), accOut, zapcore.InfoLevel))
	return logs, nil
}

func encoder(format string) zapcore.Encoder {
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	if format == "json" {
		return zapcore.NewJSONEncoder(ec)
	}
	ec.EncodeLevel = zapcore.CapitalLevelEncoder
	return zapcore.NewConsoleEncoder(ec)
}

func (l *Logs) openSink(path string) (zapcore.WriteSyncer, error) {
	switch path {
	case "", "stderr":
		return zapcore.Lock(os.Stderr), nil
	case "stdout":
		return zapcore.Lock(os.Stdout), nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	s := &fileSink{path: path, f: f}
	l.files = append(l.files, s)
	return s, nil
}

func openLogFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// fileSink is a log file that Reopen can swap for a new one at the same
// path; its lock also serialises writers, as zapcore.Lock would.
type fileSink struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (s *fileSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Write(p)
}

func (s *fileSink) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Sync()
}

func (s *fileSink) reopen() error {
	f, err := openLogFile(s.path)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", s.path, err)
	}
	s.mu.Lock()
	old := s.f
	s.f = f
	s.mu.Unlock()
	return old.Close()
}

// accessLog writes one line per finished tunnel and per refused handshake:
// the fields an nginx log_format for WebSockets would hold, plus why the
// tunnel ended.
type accessLog struct{ l *zap.Logger }

func (a accessLog) refused(cc *clientConn, srv *server, req *handshake.Request, status int, err error) {
	a.refusedBy(cc, srv, req, status, err, "")
}

// refusedBy is refused with the admission rule that refused (guard.go);
// rule "" leaves the field out (a protocol refusal: the status says it).
func (a accessLog) refusedBy(cc *clientConn, srv *server, req *handshake.Request, status int, err error, rule string) {
	ce := a.l.Check(zap.InfoLevel, "refused")
	if ce == nil {
		return
	}
	name, path := "-", "-"
	if srv != nil {
		name = srv.name
	}
	if req != nil && req.Path != nil {
		path = string(req.Path)
	}
	fields := [...]zap.Field{
		zap.Stringer("client", cc.remote),
		zap.String("server", name),
		zap.String("path", path),
		zap.String("upstream", "-"),
		zap.Int("status", status),
		zap.Duration("duration", time.Since(time.Unix(0, cc.opened))),
		zap.Int64("bytes_in", 0),
		zap.Int64("bytes_out", 0),
		zap.String("end", "refused"),
		zap.String("rule", rule),
		zap.String("reason", errString(err)),
	}
	if rule == "" {
		// Drop "rule", keep "reason" last.
		fields[9] = fields[10]
		ce.Write(fields[:10]...)
		return
	}
	ce.Write(fields[:]...)
}

// on says whether request lines are logged at all: when not, a plain
// request reads no clock for its duration.
func (a accessLog) on() bool { return a.l.Core().Enabled(zap.InfoLevel) }

// request writes a plain request's line: bytes_in and bytes_out count
// what crossed the client's connection for it, heads included, as a
// tunnel's line does.
func (a accessLog) request(remote netip.AddrPort, srv *server, method, path string, upstreamName string, status int, d time.Duration, in, out int64) {
	ce := a.l.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	ce.Write(
		zap.Stringer("client", remote),
		zap.String("server", srv.name),
		zap.String("method", method),
		zap.String("path", path),
		zap.String("upstream", upstreamName),
		zap.Int("status", status),
		zap.Duration("duration", d),
		zap.Int64("bytes_in", in),
		zap.Int64("bytes_out", out),
	)
}

func (a accessLog) finished(t *tunnel, r *splice.Report) {
	msg := "tunnel"
	if !r.Tunnelled {
		msg = "refused"
	}
	if ce := a.l.Check(zap.InfoLevel, msg); ce != nil {
		ce.Write(
			zap.Stringer("client", t.client),
			zap.String("server", t.srv.name),
			zap.String("path", t.path),
			zap.String("upstream", t.upstreamName()),
			zap.String("status", statusText(t.status)),
			zap.Duration("duration", durationSince(t.start, r.End)),
			zap.Int64("bytes_in", r.BytesUp),
			zap.Int64("bytes_out", r.BytesDown),
			zap.String("end", r.Reason.String()),
			zap.String("reason", errString(r.Err)),
		)
	}
}

func errString(err error) string {
	if err == nil {
		return "-"
	}
	return err.Error()
}

func zapServer(s *upstream.Server) zap.Field {
	if s == nil {
		return zap.Skip()
	}
	return zap.String("upstream", s.Name)
}

func zapErr(err error) zap.Field { return zap.Error(err) }
