// Package netns finds every network namespace on the node and samples each
// one with its own collector.Sampler.
//
// Discover lists namespaces, deduplicated by the device and inode of their
// nsfs file, from /proc/PID/ns/net (with hostPID, every process on the node)
// and from the bind mounts that `ip netns` and container runtimes keep in
// /run/netns and /var/run/netns. A Handle holds one open descriptor per
// namespace and runs code inside it: Dial opens a sock_diag socket there and
// Do runs a function on an OS thread switched into it.
//
// A Manager keeps one Handle and one Sampler per live namespace, discovers
// again on a timer, closes the descriptors of namespaces that went away and
// counts them, and runs every Sampler's jobs from one collector.Scheduler
// within one CPU budget: the cheap path (counters and a LISTEN-only dump,
// which skips the established hash) every interval for every namespace, and
// rare and full dumps as the budget allows. A dump of a non-LISTEN state
// walks the kernel's established hash, which all namespaces share unless
// created with net.ipv4.tcp_child_ehash_entries set, so N namespaces cost N
// walks; the budget stretches the dumps' interval rather than let the cost
// grow with N, and says so.
//
// Targets returns the sampled namespaces with the labels netns ("host" for
// the agent's own namespace, else the inode in decimal), namespace and pod
// (from the pod that owns the namespace, when known).
package netns
