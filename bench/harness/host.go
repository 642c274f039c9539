package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FindTool resolves a tool's name to an absolute path: a name with a '/'
// is taken as a path to an executable file; a bare name is looked up in
// PATH, then in /usr/sbin, /sbin and /usr/local/sbin, which a non-login
// root shell or `make` may not have in PATH. install says how to get the
// tool; it ends the error for a name found nowhere.
func FindTool(name, install string) (string, error) {
	if strings.ContainsRune(name, '/') {
		if st, err := os.Stat(name); err != nil || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return filepath.Abs(name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or /usr/sbin: %s", name, install)
}

// ClockTicks is CLK_TCK, the unit of /proc/PID/stat's CPU times. Go has no
// sysconf; getconf asks the C library once, and 100 is what Linux has
// reported to user space on every architecture for decades (USER_HZ).
func ClockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && v > 0 {
			return float64(v)
		}
	}
	return 100
}

// CombinedOutput runs a command and returns its stdout and stderr
// together (nginx -v and -V write to stderr), "" if it cannot run.
func CombinedOutput(argv ...string) string {
	out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out)
}

// FirstLine returns the first non-empty line of a command's combined
// output, trimmed: a version line.
func FirstLine(argv ...string) string {
	for line := range strings.Lines(CombinedOutput(argv...)) {
		if s := strings.TrimSpace(line); s != "" {
			return s
		}
	}
	return ""
}

// LoadAvg returns the three load averages from /proc/loadavg, "?" when
// unreadable.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ProcField returns the value of the first "key: value" line of a /proc
// text file (cpuinfo's "model name", meminfo's "MemTotal"), "?" when
// there is none.
func ProcField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// KernelRelease is uname -r, "?" when uname fails.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
