package configs

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

//go:embed default.toml
var defaultTOML []byte

// DefaultSource is Config.Source for the embedded default.
const DefaultSource = "embedded default"

// DefaultTOML returns a copy of the embedded default configuration file:
// every key spelled out with its default and a comment. `sluice` runs it
// when given neither --config nor --proxy.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Default returns the embedded default configuration, parsed: listen on
// 127.0.0.1:8080 and proxy /ws/ to 127.0.0.1:9000 (the bundled echo
// backend). Each call returns a fresh Config. It panics only if the
// embedded file is broken, which a test guards against.
func Default() *Config {
	c, err := Parse(defaultTOML, DefaultSource)
	if err != nil {
		panic("configs: embedded default.toml is invalid: " + err.Error())
	}
	return c
}

// Load reads the TOML file at path and parses it; see Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes a TOML configuration strictly (an unknown key or a value of
// the wrong type is an error), fills the defaults and validates the result.
// filename only labels errors and Config.Source.
//
// Errors are *ConfigError values, several joined with errors.Join when
// there is more than one problem. Decoding problems are reported alone:
// Validate does not run on a config that did not decode, since most of
// what it would say (a missing listen after "lisen = ...") would be noise.
func Parse(data []byte, filename string) (*Config, error) {
	// Pass 1: go-toml checks the TOML itself (syntax, duplicate keys,
	// table redefinitions) into a generic tree.
	var tree map[string]any
	if err := toml.Unmarshal(data, &tree); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			// No key path: go-toml's Key() is only the local key, which its
			// message already names ("toml: key listen is already defined").
			return nil, &ConfigError{File: filename, Line: line, Col: col, Msg: de.Error()}
		}
		return nil, &ConfigError{File: filename, Msg: err.Error()}
	}

	// Pass 2: map the tree onto the schema ourselves, so that every error
	// names the key path in the user's terms and points at its line.
	c := &Config{Source: filename, file: filename, pos: indexPositions(data)}
	d := &decoder{errorList: errorList{file: filename, pos: c.pos}}
	d.value("", reflect.ValueOf(c).Elem(), tree)
	if err := d.err(); err != nil {
		return nil, err
	}

	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decoder maps go-toml's generic tree (map[string]any, []any, string,
// int64, float64, bool, time values) onto the Config structs, using the
// toml struct tags as key names.
type decoder struct {
	errorList
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

func (d *decoder) value(path string, v reflect.Value, raw any) {
	switch v.Type() {
	case durationType:
		switch x := raw.(type) {
		case string:
			dur, err := ParseDuration(x)
			if err != nil {
				d.add(path, "%v", err)
				return
			}
			v.SetInt(int64(dur))
		case int64: // nginx: a bare number is seconds
			if x < 0 || x > math.MaxInt64/int64(time.Second) {
				d.add(path, "invalid duration %d (want e.g. \"60s\", \"1h\")", x)
				return
			}
			v.SetInt(x * int64(time.Second))
		default:
			d.add(path, "expected a duration string such as \"60s\"")
		}
		return
	case sizeType:
		switch x := raw.(type) {
		case string:
			n, err := ParseSize(x)
			if err != nil {
				d.add(path, "%v", err)
				return
			}
			v.SetInt(int64(n))
		case int64:
			if x < 0 {
				d.add(path, "invalid size %d (want e.g. \"16k\", \"1m\", 4096)", x)
				return
			}
			v.SetInt(x)
		default:
			d.add(path, "expected a size such as \"16k\" or 4096")
		}
		return
	}

	switch v.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.add(path, "expected a string")
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.add(path, "expected true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int:
		n, ok := raw.(int64)
		if !ok {
			d.add(path, "expected an integer")
			return
		}
		if n < math.MinInt32 || n > math.MaxInt32 {
			d.add(path, "integer %d out of range", n)
			return
		}
		v.SetInt(n)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.value(path, v.Elem(), raw)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.add(path, "expected a table")
			return
		}
		d.table(path, v, m)
	case reflect.Map: // map[string]*Upstream
		m, ok := raw.(map[string]any)
		if !ok {
			d.add(path, "expected a table of named tables")
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(v.Type(), len(m)))
		}
		for _, k := range d.sortedKeys(path, m) {
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(joinKey(path, k), e, m[k])
			v.SetMapIndex(reflect.ValueOf(k), e)
		}
	case reflect.Slice:
		d.slice(path, v, raw)
	default:
		panic("configs: no decoder for " + v.Type().String()) // a schema change without a decoder change
	}
}

func (d *decoder) slice(path string, v reflect.Value, raw any) {
	var elems []any
	switch x := raw.(type) {
	case []any:
		elems = x
	case []map[string]any:
		for _, m := range x {
			elems = append(elems, m)
		}
	default:
		if v.Type().Elem().Kind() == reflect.Pointer {
			d.add(path, "expected an array of tables ([[%s]])", lastKey(path))
		} else {
			d.add(path, "expected an array of strings")
		}
		return
	}
	s := reflect.MakeSlice(v.Type(), len(elems), len(elems))
	for i, e := range elems {
		ep := path + "[" + strconv.Itoa(i) + "]"
		if v.Type().Elem().Kind() == reflect.Pointer {
			if _, ok := e.(map[string]any); !ok {
				d.add(ep, "expected a table")
				continue
			}
		}
		d.value(ep, s.Index(i), e)
	}
	v.Set(s)
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// table decodes m into the struct v, reporting every key that has no field.
func (d *decoder) table(path string, v reflect.Value, m map[string]any) {
	t := v.Type()
	for _, k := range d.sortedKeys(path, m) {
		f, ok := fieldByTag(t, k)
		if !ok {
			d.add(joinKey(path, k), "unknown key")
			continue
		}
		d.value(joinKey(path, k), v.FieldByIndex(f.Index), m[k])
	}
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get("toml"); tag != "" && tag != "-" && tag == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// sortedKeys returns m's keys in the order they appear in the file, so
// errors come out top to bottom; keys with no position sort last by name.
func (d *decoder) sortedKeys(path string, m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		pi, oki := d.pos[joinKey(path, keys[i])]
		pj, okj := d.pos[joinKey(path, keys[j])]
		switch {
		case oki && okj && pi != pj:
			if pi.line != pj.line {
				return pi.line < pj.line
			}
			return pi.col < pj.col
		case oki != okj:
			return oki
		}
		return keys[i] < keys[j]
	})
	return keys
}
