package engine

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fileCache keeps the bytes and metadata of small static files for
// fileCacheValid after they were opened, so that a hot file costs no
// system call beyond the response's own write: nginx's open_file_cache
// with valid=1s (off in nginx by default, where every request opens,
// stats and closes the file). The price is the same as nginx's: for up to
// a second a changed or deleted file is still served as it was. Whether a
// name resolves inside the root was decided by the open that filled the
// entry (openat2 RESOLVE_BENEATH); the cache never resolves names itself.
//
// Bounded: files up to smallFile bytes, fileCacheSize in all; past that
// the cache is emptied and fills again with what is hot.
type fileCache struct {
	mu      sync.RWMutex
	entries map[string]*cachedFile
	total   int
}

// cachedFile is one file as it was when opened. body is never written
// after the entry is stored: responses share it.
type cachedFile struct {
	st     unix.Stat_t
	body   []byte
	expiry int64 // unix nanoseconds
}

const (
	fileCacheValid = time.Second
	fileCacheSize  = 16 << 20
)

// get returns the entry for name if it is still valid. No allocation: the
// map lookup converts name without copying.
func (c *fileCache) get(name []byte) *cachedFile {
	c.mu.RLock()
	f := c.entries[string(name)]
	c.mu.RUnlock()
	if f == nil || time.Now().UnixNano() >= f.expiry {
		return nil
	}
	return f
}

func (c *fileCache) put(name []byte, st *unix.Stat_t, body []byte) {
	f := &cachedFile{st: *st, body: body, expiry: time.Now().Add(fileCacheValid).UnixNano()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || c.total+len(body) > fileCacheSize {
		c.entries, c.total = make(map[string]*cachedFile), 0
	}
	if old := c.entries[string(name)]; old != nil {
		c.total -= len(old.body)
	}
	c.entries[string(name)] = f
	c.total += len(body)
}

// closeFD closes fd unless it is -1 (a body served from the cache).
func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
