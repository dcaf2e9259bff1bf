// Package diag is the kernel boundary of tcpstate-exporter: a streaming
// client for NETLINK_SOCK_DIAG (inet_diag) dumps of TCP sockets.
//
// A dump is delivered as a stream of decoded sockets to a callback, from one
// receive buffer that the Conn reuses for its whole life: no allocation per
// socket, and memory that does not grow with the number of sockets. Decoding
// is pure (see DecodeSocket and ParseMessages), length-checked and fuzzed; the
// netlink exchange runs behind the Transport seam so that it can be tested
// without root.
//
// The package knows nothing of Prometheus.
package diag
