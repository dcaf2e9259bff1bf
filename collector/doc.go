// Package collector turns sock_diag dumps into samples and samples into
// Prometheus metrics and detector findings.
//
// A Sampler owns all kernel work for one network namespace: on a schedule
// held inside a CPU budget it runs dumps (full ones over every state, cheap
// "rare" ones that skip ESTABLISHED and TIME_WAIT) and aggregates each into
// a Sample. With every sample it reads the namespace's TCP counters
// (/proc/net/netstat and snmp) and sockstat: on the cheap path through
// files held open since they were first opened on a thread inside the
// namespace (SamplerOptions.InNetns), and with dumps on that thread, where
// the sysctls the detectors use are read too (on the cheap path every 30
// s). A file that cannot be read leaves out only what depends on it and is
// counted.
//
// A Sample holds counts per family and state; listening addresses with
// their queues, half-open connections, and the distinct source addresses and
// top source prefixes of those; for full dumps, the outbound sockets per
// destination (local address, remote address and port), which is what
// connect() needs distinct local ports for; and the CLOSE_WAIT sockets
// grouped by local port and owning command. CLOSE_WAIT sockets are tracked
// by cookie across dumps to know their age, and the owner of a socket older
// than the minimum age is looked up once through /proc, bounded in time and
// frequency. Full dumps also gather connection health from fields every
// socket carries (connhealth_agg.go): sockets stalled towards a peer (the
// retransmission timer with several consecutive retransmissions, or
// zero-window probing) by remote address, each listener's live connections
// by client address, and self-connected sockets; and every dump counts the
// half-open connections whose SYN-ACK was retransmitted. The per-socket work
// stays allocation-free for ordinary sockets, and every table is bounded.
//
// After each sample the Sampler pushes a summary onto a history and runs
// the detectors of package detect over it; Sampler.Findings returns the
// latest findings.
//
// The Exporter implements prometheus.Collector by reading the latest
// published samples: a scrape never starts a dump, so concurrent scrapes do
// not multiply kernel work and scrape latency does not grow with the number
// of sockets.
package collector
