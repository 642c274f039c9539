package splice

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysRead is read(2) on a non-blocking fd. It returns the raw errno so the
// relay never boxes an error into an interface (that would allocate for
// errnos above 255). RawSyscall is fine: the fd is non-blocking, so the call
// never waits and the scheduler need not be told. b must not be empty.
func sysRead(fd int, b []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// sysWrite is send(2) with MSG_NOSIGNAL on a non-blocking socket: a peer that
// vanished yields EPIPE here instead of a SIGPIPE delivered to the thread.
// Both fds of a job are sockets, so send is always applicable. b must not be
// empty.
func sysWrite(fd int, b []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// peekClosed reports whether the peer of fd has closed its side with no
// bytes left unread (recv MSG_PEEK returns 0). Used when EPOLLRDHUP arrives
// on a client we do not read yet: a FIN with data still queued is a client
// that sent and half-closed; a bare FIN is a client that gave up (nginx's
// ngx_http_upstream_check_broken_connection does the same).
func peekClosed(fd int, b []byte) bool {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return e == 0 && n == 0
}

// sockErr returns and clears the socket's pending error (SO_ERROR).
func sockErr(fd int) unix.Errno {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		if e, ok := err.(unix.Errno); ok {
			return e
		}
		return unix.EINVAL
	}
	return unix.Errno(v)
}

// dialSocket starts a non-blocking connect to ap. It returns the socket when
// the connect is in progress (EINPROGRESS, the usual case) or already done;
// the caller waits for EPOLLOUT and reads SO_ERROR. On loopback a closed port
// can fail at once with ECONNREFUSED: that comes back as the error.
func dialSocket(ap netip.AddrPort) (int, error) {
	a := ap.Addr().Unmap()
	var (
		sa     unix.Sockaddr
		family int
	)
	switch {
	case a.Is4():
		sa, family = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, unix.AF_INET
	case a.Is6():
		sa6 := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
		if z := a.Zone(); z != "" {
			ifi, err := net.InterfaceByName(z)
			if err != nil {
				return -1, err
			}
			sa6.ZoneId = uint32(ifi.Index)
		}
		sa, family = sa6, unix.AF_INET6
	default:
		return -1, unix.EAFNOSUPPORT
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	// Small WebSocket messages must not wait for Nagle.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, err
	}
	switch err := unix.Connect(fd, sa); err {
	case nil, unix.EINPROGRESS, unix.EINTR: // EINTR: the connect goes on asynchronously
		return fd, nil
	default:
		unix.Close(fd)
		return -1, err
	}
}
