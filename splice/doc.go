// Package splice is sluice's relay engine. It takes a client socket whose
// WebSocket upgrade request the engine has parsed, connects to the upstream
// without blocking (its own epoll loops, connect timeouts, further addresses
// on failure), writes the prepared request, has the engine judge the answer
// (Handler.Judge), and then either relays the pair as a tunnel or answers
// the client and closes.
//
// splice knows fds, not HTTP: every HTTP decision is a Handler callback,
// made once per job, never per chunk.
//
// Shape: a Pool of loops; each loop is one goroutine locked to an OS thread
// with one epoll fd, edge-triggered registrations made once per fd, one
// shared 64 KiB read buffer, a free list of pending buffers, and a min-heap
// of lazily updated deadlines. A tunnel holds a buffer only while a write is
// blocked, at most BufferSize per direction; an idle tunnel holds none.
package splice
