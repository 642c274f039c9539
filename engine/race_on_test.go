//go:build race

package engine

// raceEnabled: the race detector slows every handshake several times;
// tests that churn thousands of connections do fewer under it.
const raceEnabled = true
