// Package guard holds sluice's admission rules: small types, one job each,
// that decide whether a client may go on before any upstream is dialed.
//
//   - OriginPolicy: which browser origins may open a WebSocket (RFC 6455
//     §10.2, against cross-site WebSocket hijacking).
//   - CIDRList: allow/deny by client address (nginx allow/deny).
//   - ConnLimiter: live connections per client address (nginx limit_conn).
//   - RateLimiter: handshakes per second per client address (nginx
//     limit_req with burst and nodelay).
//   - RealIP: which address is the client's when trusted proxies stand in
//     front (nginx set_real_ip_from, real_ip_recursive on).
//
// Every check is bounded work on data the proxy already holds: nothing here
// reads a socket, sleeps or logs. The engine runs them in its event loops,
// cheapest and most decisive first, and logs and counts each refusal.
// Attackers control every input; a rule must fail closed on anything it does
// not understand.
package guard
