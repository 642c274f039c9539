package engine

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawIO does a plain-HTTP TCP connection's reads with recvfrom and its
// writes with sendto, through the connection's syscall.RawConn, so under
// the runtime's poller and deadlines exactly as net.Conn's own Read and
// Write: read and write go through the kernel's file layer (file position
// lock, permission hooks, iov iterators) before reaching the socket, which
// cost more per small request than the socket calls themselves.
type rawIO struct {
	c      net.Conn // for the addresses of errors
	rc     syscall.RawConn
	rp     []byte // the read in progress
	rn     int
	rerr   syscall.Errno
	wp     []byte // what is left of the write in progress
	wn     int
	werr   syscall.Errno
	rf, wf func(uintptr) bool // recv and send, bound once
}

// newRawIO returns nil for a connection that is not a socket of ours
// (a TLS connection, a test's pipe): it keeps net.Conn's Read and Write.
func newRawIO(c net.Conn) *rawIO {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &rawIO{c: c, rc: rc}
	r.rf, r.wf = r.recv, r.send
	return r
}

func (r *rawIO) recv(fd uintptr) bool {
	for {
		n, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.rp))), uintptr(len(r.rp)), 0, 0, 0)
		switch e {
		case 0:
			r.rn, r.rerr = int(n), 0
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for the socket to be readable
		}
		r.rn, r.rerr = 0, e
		return true
	}
}

func (r *rawIO) send(fd uintptr) bool {
	for len(r.wp) > 0 {
		n, _, e := syscall.Syscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.wp))), uintptr(len(r.wp)), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			r.wn += int(n)
			r.wp = r.wp[n:]
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the poller waits for room in the socket
		}
		r.werr = e
		return true
	}
	return true
}

// Read is net.Conn's Read: io.EOF at the end, errors as *net.OpError.
func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rp = p
	err := r.rc.Read(r.rf)
	r.rp = nil
	if err != nil {
		return 0, r.opError("read", err)
	}
	if r.rerr != 0 {
		return 0, r.opError("read", os.NewSyscallError("recvfrom", r.rerr))
	}
	if r.rn == 0 {
		return 0, io.EOF
	}
	return r.rn, nil
}

// Write is net.Conn's Write: all of p, or an error with what was written.
func (r *rawIO) Write(p []byte) (int, error) {
	r.wp, r.wn, r.werr = p, 0, 0
	err := r.rc.Write(r.wf)
	n := r.wn
	r.wp = nil
	if err != nil {
		return n, r.opError("write", err)
	}
	if r.werr != 0 {
		return n, r.opError("write", os.NewSyscallError("sendto", r.werr))
	}
	return n, nil
}

func (r *rawIO) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: r.c.LocalAddr(), Addr: r.c.RemoteAddr(), Err: err}
}
