package configs

import (
	"maps"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// pos is a 1-based line and column in a config file.
type pos struct{ line, col int }

// positions maps a key path, written the way errors print it
// ("log.level", "upstream.chat.servers[1]", "server[0].location[2].path"),
// to where that key (or array element, or [[table]] header) was written.
//
// go-toml's decoder reports positions for syntax errors only; everything
// found later (unknown keys, bad values, Validate's cross-field rules) needs
// this index to point at a line. It is built from go-toml's unstable AST,
// which keeps byte ranges for every key and scalar.
type positions map[string]pos

// find returns the position of path or, if that key was never written
// (e.g. a missing listen), of its nearest written parent (the [[server]]
// header). The zero pos means nothing in the path was written.
func (p positions) find(path string) pos {
	for path != "" {
		if v, ok := p[path]; ok {
			return v
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return pos{}
}

// forget drops path and everything under it: used by Apply when a flag
// replaces a value, so that errors about it no longer point into the file.
func (p positions) forget(path string) {
	for k := range p {
		if k == path || strings.HasPrefix(k, path+".") || strings.HasPrefix(k, path+"[") {
			delete(p, k)
		}
	}
}

func (p positions) clone() positions { return maps.Clone(p) }

// indexPositions builds the key-path index of a TOML document that go-toml
// has already accepted. It follows TOML's table rules just far enough to
// name array-of-tables elements the way the decoder numbers them: each
// [[a.b]] header appends an element to the array a.b, and a path through
// an array of tables refers to its last element so far.
func indexPositions(data []byte) positions {
	ix := indexer{idx: positions{}, arrays: map[string]int{}}
	for i, c := range data {
		if c == '\n' {
			ix.lines = append(ix.lines, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			path := ""
			it := e.Key()
			for it.Next() {
				k := it.Node()
				path = joinKey(path, string(k.Data))
				if it.IsLast() && e.Kind == unstable.ArrayTable {
					n := ix.arrays[path]
					ix.arrays[path] = n + 1
					ix.set(path, k.Raw)
					path += "[" + strconv.Itoa(n) + "]"
				} else if n, ok := ix.arrays[path]; ok {
					path += "[" + strconv.Itoa(n-1) + "]"
				}
				ix.set(path, k.Raw)
			}
			table = path
		case unstable.KeyValue:
			ix.keyValue(table, e)
		}
	}
	return ix.idx
}

type indexer struct {
	idx    positions
	arrays map[string]int // array-of-tables path → elements seen so far
	lines  []int          // byte offsets at which lines 2, 3, ... start
}

func (ix *indexer) keyValue(path string, kv *unstable.Node) {
	it := kv.Key()
	for it.Next() {
		k := it.Node()
		path = joinKey(path, string(k.Data))
		ix.set(path, k.Raw)
	}
	ix.value(path, kv.Value())
}

func (ix *indexer) value(path string, v *unstable.Node) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				ix.keyValue(path, c)
			}
		}
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			elem := path + "[" + strconv.Itoa(i) + "]"
			if c.Raw.Length > 0 { // nested arrays carry no range
				ix.set(elem, c.Raw)
			}
			ix.value(elem, c)
			i++
		}
	}
}

// set records where path was first written; TOML forbids defining a key
// twice, and for a table the first header is the one to point at.
func (ix *indexer) set(path string, r unstable.Range) {
	if _, ok := ix.idx[path]; ok {
		return
	}
	off := int(r.Offset)
	line := sort.SearchInts(ix.lines, off+1) // lines starting at or before off
	start := 0
	if line > 0 {
		start = ix.lines[line-1]
	}
	ix.idx[path] = pos{line: line + 1, col: off - start + 1}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
