package engine

import (
	"sync"

	"github.com/panjf2000/gnet/v2"
)

// pendingShards splits a listener's pending connections so that event loops
// adding and removing them rarely meet on one mutex. The lock is taken once
// when a connection opens and once when its head is done: never on a tunnel.
const pendingShards = 16

// pendingList holds the connections of one listener that have not finished
// their request head, oldest first, so the header timeout can close the
// ones that are late without scanning the rest. All entries of a listener
// share one timeout, which keeps every shard sorted by deadline.
type pendingList struct {
	shards [pendingShards]pendingShard
}

type pendingShard struct {
	mu         sync.Mutex
	head, tail *clientConn
}

func (p *pendingList) shard(c *clientConn) *pendingShard {
	return &p.shards[uint(c.fd)%pendingShards]
}

func (p *pendingList) add(c *clientConn) {
	s := p.shard(c)
	s.mu.Lock()
	c.prev, c.next = s.tail, nil
	if s.tail != nil {
		s.tail.next = c
	} else {
		s.head = c
	}
	s.tail = c
	c.listed = true
	s.mu.Unlock()
}

func (p *pendingList) remove(c *clientConn) {
	s := p.shard(c)
	s.mu.Lock()
	if c.listed {
		if c.prev != nil {
			c.prev.next = c.next
		} else {
			s.head = c.next
		}
		if c.next != nil {
			c.next.prev = c.prev
		} else {
			s.tail = c.prev
		}
		c.prev, c.next, c.listed = nil, nil, false
	}
	s.mu.Unlock()
}

// expire unlinks every connection whose deadline is at or before now and
// calls fn for it outside the lock. fn runs on the ticker goroutine, so it
// may only use gnet's concurrency-safe calls on the connection.
func (p *pendingList) expire(now int64, fn func(gnet.Conn)) {
	var late []gnet.Conn
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.Lock()
		for c := s.head; c != nil && c.deadline <= now; c = s.head {
			s.head = c.next
			if s.head != nil {
				s.head.prev = nil
			} else {
				s.tail = nil
			}
			c.prev, c.next, c.listed = nil, nil, false
			late = append(late, c.conn)
		}
		s.mu.Unlock()
	}
	for _, c := range late {
		fn(c)
	}
}

// count returns the number of pending connections (tests and metrics).
func (p *pendingList) count() int {
	n := 0
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.Lock()
		for c := s.head; c != nil; c = c.next {
			n++
		}
		s.mu.Unlock()
	}
	return n
}
