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
// counts them, and runs every Sampler from a single scheduler goroutine: one
// dump at a time, round-robin, paced so that all namespaces together stay
// within one CPU budget. Every dump walks the kernel's socket hash, which all
// namespaces share, so N namespaces cost N walks; the scheduler stretches the
// sweep over the namespaces rather than let the cost grow with N.
//
// Targets returns the sampled namespaces with the labels netns ("host" for
// the agent's own namespace, else the inode in decimal), namespace and pod
// (from the pod that owns the namespace, when known).
package netns
