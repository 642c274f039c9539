package configs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ConfigError is one problem in a configuration, located as precisely as
// the source allows. Its text is
//
//	file:line:col: key.path: message
//
// for example
//
//	sluice.toml:12:3: server[0].location[1].read_timeout: invalid duration "36xx" (want e.g. "60s", "1h")
//
// which editors and terminals turn into a jump to the line. Parts that are
// unknown are left out: a config built from flags has no file, a missing
// [[server]] has no line, a TOML syntax error has no key path.
//
// Parse, Load, Validate and Apply return either one *ConfigError or several
// joined with errors.Join (one per line); use errors.As to get the first.
type ConfigError struct {
	File string // file name as given to Parse; "" for flags
	Line int    // 1-based; 0 if unknown
	Col  int    // 1-based; 0 if unknown
	Path string // key path such as "server[0].listen[1]"; "" if none
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Col))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxErrors caps how many problems one load reports. Past a handful the
// rest are usually consequences of the first ones, and a fuzzed or wrong
// file (someone pointed --config at a binary) should not print pages.
const maxErrors = 20

// errorList collects ConfigErrors for one pass over a config.
type errorList struct {
	file string
	pos  positions
	errs []error
	more int // errors dropped past maxErrors
}

// add records msg against path, located at path's key or, if that key was
// not written, at its nearest written parent.
func (l *errorList) add(path, format string, args ...any) {
	if len(l.errs) >= maxErrors {
		l.more++
		return
	}
	p := l.pos.find(path)
	l.errs = append(l.errs, &ConfigError{File: l.file, Line: p.line, Col: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	if l.more > 0 {
		return errors.Join(append(l.errs, fmt.Errorf("and %d more errors", l.more))...)
	}
	if len(l.errs) == 1 {
		return l.errs[0]
	}
	return errors.Join(l.errs...)
}
