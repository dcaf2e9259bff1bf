// Package podinfo attributes processes to Kubernetes pods: the pod UID from
// a process's cgroup path (cgroup v1 and v2, systemd and cgroupfs drivers,
// as kubelet lays them out under containerd, CRI-O or Docker), and the
// pod's namespace and name from a node-scoped informer on the metadata of
// pods in the Kubernetes API (client-go's metadata client, which fetches
// PartialObjectMetadata only, with the field selector spec.nodeName). The
// package links no typed clientset, so the agent's binary and resident
// memory stay small.
//
// Without a reachable API the Resolver logs one warning and answers no
// names, so namespaces keep only their inode label.
package podinfo
