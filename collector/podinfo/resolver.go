package podinfo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// NodeNameEnv is the environment variable that names the agent's node; the
// DaemonSet sets it from the downward API (spec.nodeName).
const NodeNameEnv = "NODE_NAME"

// mirrorAnnotation holds, on the mirror pod of a static pod, the UID the
// kubelet gave the static pod, which is the one in its cgroup path.
const mirrorAnnotation = "kubernetes.io/config.mirror"

// uidIndex is the informer index from pod UID (and static pod UID) to pod.
const uidIndex = "uid"

// podsResource is the resource the Resolver watches, as metadata only.
var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// ResolverOptions configure a Resolver.
type ResolverOptions struct {
	// Kubeconfig is a kubeconfig file for out-of-cluster use (testing);
	// empty means the in-cluster service account.
	Kubeconfig string
	// NodeName is the node whose pods are watched; default $NODE_NAME.
	NodeName string
	// ProcRoot is where procfs is mounted; default /proc.
	ProcRoot string
	// SyncTimeout is how long the first listing of pods may take before
	// the Resolver warns that names are unavailable; default 30s.
	SyncTimeout time.Duration
	// Logger receives the Resolver's messages and client-go's (client-go's
	// verbose messages are below Info); default slog.Default().
	Logger *slog.Logger
}

func (c *ResolverOptions) setDefaults() {
	if c.NodeName == "" {
		c.NodeName = os.Getenv(NodeNameEnv)
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Resolver maps processes to pod UIDs and pod UIDs to namespace and name.
// Its methods are safe for concurrent use.
type Resolver struct {
	cfg      ResolverOptions
	informer cache.SharedIndexInformer // nil when degraded
	running  sync.WaitGroup            // the informer and its sync waiter

	warnOnce sync.Once
	warned   atomic.Bool
	synced   atomic.Bool
	started  atomic.Bool
}

// New returns a Resolver for the Kubernetes API of cfg. A Kubeconfig that
// cannot be loaded is an error, with or without a node name. Without a
// node name or outside a cluster (and without a Kubeconfig) it returns a
// degraded Resolver that has logged one warning and answers no names.
func New(cfg ResolverOptions) (*Resolver, error) {
	cfg.setDefaults()
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		// Loaded first, so that a bad file is reported even when the
		// missing node name leaves it unused.
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("podinfo: loading kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	}
	if cfg.NodeName == "" {
		r := &Resolver{cfg: cfg}
		r.warn("pod attribution off: no node name; set " + NodeNameEnv + " from spec.nodeName")
		return r, nil
	}
	if cfg.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
		if err != nil {
			r := &Resolver{cfg: cfg}
			r.warn("pod attribution off: no Kubernetes API configuration", "err", err)
			return r, nil
		}
	}
	rc.UserAgent = "tcpstate-exporter"
	client, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("podinfo: creating Kubernetes metadata client: %w", err)
	}
	return NewWithClient(client, cfg), nil
}

// NewWithClient returns a Resolver that watches the metadata of the pods
// of cfg.NodeName through client (any metadata client, such as client-go's
// fake one). Only metadata crosses the wire and stays in the cache: the
// pods' specs and statuses, and client-go's typed clientsets, are never
// needed.
func NewWithClient(client metadata.Interface, cfg ResolverOptions) *Resolver {
	cfg.setDefaults()
	r := &Resolver{cfg: cfg}
	if cfg.NodeName == "" {
		r.warn("pod attribution off: no node name; set " + NodeNameEnv + " from spec.nodeName")
		return r
	}
	// The API server applies the field selector to metadata lists and
	// watches as to full ones: only this node's pods arrive.
	selector := fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	pods := client.Resource(podsResource)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return pods.Watch(ctx, o)
		},
	}
	r.informer = cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, client),
		&metav1.PartialObjectMetadata{},
		cache.SharedIndexInformerOptions{
			Indexers:          cache.Indexers{uidIndex: indexUID},
			ObjectDescription: "pod metadata",
		})
	// Errors here mean the informer has started, which it cannot have.
	_ = r.informer.SetTransform(slimPod)
	_ = r.informer.SetWatchErrorHandlerWithContext(r.watchError)
	return r
}

// slimPod keeps only what attribution needs, so that the cache holds a
// hundred-odd bytes per pod rather than its labels, annotations and
// managed fields.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	s := &metav1.PartialObjectMetadata{
		ObjectMeta: metav1.ObjectMeta{
			Name:            p.Name,
			Namespace:       p.Namespace,
			UID:             p.UID,
			ResourceVersion: p.ResourceVersion,
		},
	}
	if v, ok := p.Annotations[mirrorAnnotation]; ok {
		s.Annotations = map[string]string{mirrorAnnotation: v}
	}
	return s, nil
}

// indexUID indexes a pod by its UID and, for a mirror pod, by the static
// pod's UID. Pod metadata carries no node name: the list and watch hold
// this node's pods because the API server applied the field selector.
func indexUID(obj any) ([]string, error) {
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok || p.UID == "" {
		return nil, nil
	}
	keys := []string{string(p.UID)}
	if v := p.Annotations[mirrorAnnotation]; v != "" && v != string(p.UID) {
		keys = append(keys, v)
	}
	return keys, nil
}

// warn logs msg once per Resolver; later calls log at debug level.
func (r *Resolver) warn(msg string, args ...any) {
	first := false
	r.warnOnce.Do(func() {
		first = true
		r.warned.Store(true)
		r.cfg.Logger.Warn(msg+"; namespaces are labelled by inode only", args...)
	})
	if !first {
		r.cfg.Logger.Debug(msg, args...)
	}
}

// watchError replaces client-go's default handler, which logs every
// failed list or watch: the first is a warning, the rest are debug.
func (r *Resolver) watchError(_ context.Context, _ *cache.Reflector, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	r.warn("Kubernetes API unreachable: pods not attributed", "node", r.cfg.NodeName, "err", err)
}

// Start starts the pod watch in the background; it stops when ctx ends.
// It returns at once. A degraded Resolver does nothing. Starting twice is
// a no-op.
func (r *Resolver) Start(ctx context.Context) {
	if r.informer == nil || r.started.Swap(true) {
		return
	}
	// client-go logs through the context's logger: route it to ours.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(r.cfg.Logger.Handler()))
	r.running.Add(2)
	go func() {
		defer r.running.Done()
		r.informer.RunWithContext(ctx)
	}()
	go func() {
		defer r.running.Done()
		r.awaitSync(ctx)
	}()
}

// awaitSync records the first listing of the node's pods, warning once if
// it takes longer than the sync timeout.
func (r *Resolver) awaitSync(ctx context.Context) {
	wctx, cancel := context.WithTimeout(ctx, r.cfg.SyncTimeout)
	defer cancel()
	if cache.WaitForCacheSync(wctx.Done(), r.informer.HasSynced) {
		r.synced.Store(true)
		lvl := slog.LevelDebug
		if r.warned.Load() {
			lvl = slog.LevelInfo
		}
		r.cfg.Logger.Log(ctx, lvl, "pod watch synced; namespaces attributed to pods", "node", r.cfg.NodeName)
		return
	}
	if ctx.Err() != nil {
		return
	}
	r.warn("Kubernetes API did not answer in time: pods not attributed yet", "node", r.cfg.NodeName, "timeout", r.cfg.SyncTimeout)
	// Keep waiting: the informer retries, and names arrive once the API
	// answers.
	if cache.WaitForCacheSync(ctx.Done(), r.informer.HasSynced) {
		r.synced.Store(true)
		r.cfg.Logger.Info("pod watch synced; namespaces attributed to pods", "node", r.cfg.NodeName)
	}
}

// Shutdown waits for the watch's goroutines to end; cancel Start's context
// first.
func (r *Resolver) Shutdown() { r.running.Wait() }

// Synced reports whether the first listing of the node's pods has arrived.
func (r *Resolver) Synced() bool { return r.synced.Load() }

// Degraded reports whether the Resolver has no API to ask (it never
// answers names).
func (r *Resolver) Degraded() bool { return r.informer == nil }

// PodUID returns the UID of the pod process pid belongs to, from its
// cgroup, or "" when it is in no pod or is gone.
func (r *Resolver) PodUID(pid int) string {
	uid, err := PodUID(r.cfg.ProcRoot, pid)
	if err != nil {
		return ""
	}
	return uid
}

// Lookup returns the namespace and name of the pod with the given UID (or,
// for a static pod, the UID in its cgroup path) among the node's pods.
func (r *Resolver) Lookup(uid string) (namespace, name string, ok bool) {
	if r.informer == nil || uid == "" {
		return "", "", false
	}
	objs, err := r.informer.GetIndexer().ByIndex(uidIndex, uid)
	if err != nil || len(objs) == 0 {
		return "", "", false
	}
	p, ok := objs[0].(*metav1.PartialObjectMetadata)
	if !ok {
		return "", "", false
	}
	return p.Namespace, p.Name, true
}
