// Package events is the optional eBPF event source of tcpstate-exporter: the
// second kernel boundary beside package diag, and like it, it imports
// nothing of Prometheus.
//
// Five BPF programs on BTF tracepoints (sock:inet_sock_set_state,
// tcp:tcp_send_reset, tcp:tcp_receive_reset, tcp:tcp_retransmit_skb,
// tcp:tcp_retransmit_synack; sources in bpf/) count, per network namespace
// cookie, connections opened and closed (with the lifetime of closed ones),
// connects that failed (with the socket's error), resets sent (with the
// kernel's reason where the tracepoint passes one) and received, and
// retransmitted segments and SYN-ACKs. They aggregate in fixed-size kernel
// maps: nothing is sent to user space per event, a full map drops the event
// and counts it, and user space reads the maps when it samples (Source.Read).
// A filter in the kernel restricts the events to one namespace (host mode) or
// lets every namespace through (SourceOptions.Netns 0).
//
// Check says whether the process may load the programs (CAP_BPF and
// CAP_PERFMON, kernel BTF); Open loads and attaches them, choosing the
// tcp_send_reset program that matches the kernel's tracepoint (with or
// without the reason argument). The map records are decoded by pure,
// length-checked functions (DecodeKey, DecodeValue), fuzzed.
//
// The objects are generated with cilium/ebpf's bpf2go and committed; see
// gen.go.
package events
