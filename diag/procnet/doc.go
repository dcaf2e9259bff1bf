// Package procnet reads the kernel's O(1) per-namespace TCP aggregates and
// the sysctls the detectors depend on, and maps socket inodes to the
// processes that hold them.
//
// It owns three things:
//
//   - Pure parsers for /proc/net/netstat and /proc/net/snmp (ParseCounters),
//     /proc/net/sockstat and sockstat6 (ParseSockstat), and the sysctl value
//     formats (ParseSysctlInt, ParsePortRange, ParseReservedPorts), plus
//     UsablePorts, which computes how many local ports connect() can pick.
//     Parsers take bytes, do no I/O, never panic on bad input and report it
//     as a *ParseError wrapping one of the Err* sentinels.
//   - Reader, a thin, allocation-light reader of those files below a
//     configurable proc root. It reads the net files through
//     /proc/thread-self/net and the sysctls through /proc/sys, so both
//     describe the network namespace of the calling OS thread: a caller that
//     has locked its goroutine to a thread and setns'd it into another
//     namespace sees that namespace.
//   - InodeLookup, which scans /proc/PID/fd to find the processes owning a
//     set of socket inodes, bounded in processes scanned and time spent.
//
// The package knows nothing of Prometheus: turning these values into
// metrics is the collector's job. Socket counts per state come from
// sock_diag (package diag), not from here; the values here are kernel
// counters, gauges kept by the kernel, and configuration.
package procnet
