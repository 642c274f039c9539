package configs

import (
	"strconv"
	"strings"
)

// IsStatic reports whether the location serves files (root) rather than
// proxying.
func (l *Location) IsStatic() bool { return l.Root != "" }

// CompressOn is Compress with its default (true) applied.
func (l *Location) CompressOn() bool { return l.Compress == nil || *l.Compress }

// validateStatic checks the keys of a root location. The directory itself
// is not required to exist here: as in nginx, a missing root is a runtime
// 404 (logged at start), so that a config stays valid on a machine where
// the site is deployed later.
func validateStatic(l *errorList, lp string, loc *Location) {
	if strings.ContainsRune(loc.Root, 0) {
		l.add(lp+".root", "contains a NUL byte")
	}
	for i, name := range loc.Index {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
			l.add(lp+".index["+strconv.Itoa(i)+"]", "invalid index file name %q: want a plain file name such as \"index.html\"", name)
		}
	}
	for i, t := range loc.TryFiles {
		p := lp + ".try_files[" + strconv.Itoa(i) + "]"
		switch {
		case t == "$uri" || t == "$uri/":
		case strings.HasPrefix(t, "="):
			code, err := strconv.Atoi(t[1:])
			switch {
			case err != nil || code < 200 || code > 599:
				l.add(p, "invalid status %q: want =NNN with NNN from 200 to 599, e.g. \"=404\"", t)
			case i != len(loc.TryFiles)-1:
				l.add(p, "%q must be the last entry: nothing after it is ever tried", t)
			}
		case strings.HasPrefix(t, "/"):
			if strings.Contains(t, "$") {
				l.add(p, "unsupported variable in %q: only \"$uri\" and \"$uri/\" are expanded", t)
			}
			for _, seg := range strings.Split(t, "/") {
				if seg == ".." {
					l.add(p, "%q climbs out of root", t)
					break
				}
			}
		default:
			l.add(p, "invalid entry %q: want \"$uri\", \"$uri/\", a path starting with \"/\" or \"=NNN\"", t)
		}
	}
}
