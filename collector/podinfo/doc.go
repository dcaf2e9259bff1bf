// Package podinfo attributes processes to Kubernetes pods: the pod UID from
// a process's cgroup path (cgroup v1 and v2, systemd and cgroupfs drivers,
// as kubelet lays them out under containerd, CRI-O or Docker), and the
// pod's namespace and name from a node-scoped pod informer on the
// Kubernetes API (client-go, field selector spec.nodeName).
//
// Without a reachable API the Resolver logs one warning and answers no
// names, so namespaces keep only their inode label.
package podinfo
