package podinfo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// fakeNodeLabel carries a fixture pod's spec.nodeName, which pod metadata
// lacks, so that the fake API server below can apply field selectors.
const fakeNodeLabel = "test.tcpstate.invalid/node-name"

// pod returns the metadata of a pod on node, as the fake metadata client
// stores it, with a label and managed fields that the cache must drop.
func pod(ns, name, uid, node string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID(uid),
			Labels:        map[string]string{fakeNodeLabel: node, "app": name},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}},
		},
	}
}

// serverSelects reports whether the API server would send obj to a list
// or watch with fieldSelector: spec.nodeName comes from fakeNodeLabel.
func serverSelects(t *testing.T, fieldSelector string, obj runtime.Object) bool {
	sel, err := fields.ParseSelector(fieldSelector)
	if err != nil {
		t.Errorf("field selector %q: %v", fieldSelector, err)
		return false
	}
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return false
	}
	return sel.Matches(fields.Set{
		"metadata.name":      p.Name,
		"metadata.namespace": p.Namespace,
		"spec.nodeName":      p.Labels[fakeNodeLabel],
	})
}

// eventually polls cond for up to five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lookupIs(r *Resolver, uid, ns, name string) func() bool {
	return func() bool {
		gotNS, gotName, ok := r.Lookup(uid)
		if ns == "" {
			return !ok
		}
		return ok && gotNS == ns && gotName == name
	}
}

// TestResolverFakeMetadataClient drives the informer with client-go's fake
// metadata client, whose reactors apply field selectors as the API server
// does: pods on this node are found by UID (a static pod by the UID in its
// cgroup), pods of other nodes are not, and adds, updates and deletes
// arrive.
func TestResolverFakeMetadataClient(t *testing.T) {
	const (
		u1, u2, u3, u4 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222",
			"33333333-3333-3333-3333-333333333333", "44444444-4444-4444-4444-444444444444"
		mirrorUID = "55555555-5555-5555-5555-555555555555"
	)
	mirror := pod("kube-system", "etcd-node1", mirrorUID, "node1")
	mirror.Annotations = map[string]string{mirrorAnnotation: hash, "other": "dropped"}
	scheme := metadatafake.NewTestScheme()
	metav1.AddMetaToScheme(scheme)
	client := metadatafake.NewSimpleMetadataClient(scheme, pod("shop", "web-0", u1, "node1"), pod("shop", "web-1", u2, "node2"), mirror)
	var listOpts, watchOpts []string
	var mu sync.Mutex
	watching := make(chan struct{})
	var once sync.Once
	client.PrependReactor("list", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		opts := a.(clienttesting.ListActionImpl).GetListOptions()
		mu.Lock()
		listOpts = append(listOpts, opts.FieldSelector)
		mu.Unlock()
		obj, err := client.Tracker().List(a.GetResource(), schema.GroupVersionKind{Group: "fake-metadata-client-group", Version: "v1"}, a.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		list := obj.(*metav1.List)
		kept := list.Items[:0]
		for _, it := range list.Items {
			if serverSelects(t, opts.FieldSelector, it.Object) {
				kept = append(kept, it)
			}
		}
		list.Items = kept
		return true, list, nil
	})
	client.PrependWatchReactor("pods", func(a clienttesting.Action) (bool, watch.Interface, error) {
		opts := a.(clienttesting.WatchActionImpl).ListOptions
		mu.Lock()
		watchOpts = append(watchOpts, opts.FieldSelector)
		mu.Unlock()
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		once.Do(func() { close(watching) })
		return true, watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
			return e, serverSelects(t, opts.FieldSelector, e.Object)
		}), nil
	})

	rec := &fixture.LogRecorder{}
	r := NewWithClient(client, ResolverOptions{NodeName: "node1", Logger: slog.New(rec)})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r.Shutdown() }()
	r.Start(ctx)
	eventually(t, "sync", r.Synced)
	<-watching

	if ns, name, ok := r.Lookup(u1); !ok || ns != "shop" || name != "web-0" {
		t.Errorf("u1: %q %q %v", ns, name, ok)
	}
	if _, _, ok := r.Lookup(u2); ok {
		t.Error("a pod of another node was attributed")
	}
	if ns, name, ok := r.Lookup(hash); !ok || ns != "kube-system" || name != "etcd-node1" {
		t.Errorf("static pod by its cgroup UID: %q %q %v", ns, name, ok)
	}
	if _, _, ok := r.Lookup(mirrorUID); !ok {
		t.Error("mirror pod by its API UID: not found")
	}
	mu.Lock()
	if len(listOpts) == 0 || listOpts[0] != "spec.nodeName=node1" {
		t.Errorf("list field selectors %q, want spec.nodeName=node1", listOpts)
	}
	if len(watchOpts) == 0 || watchOpts[0] != "spec.nodeName=node1" {
		t.Errorf("watch field selectors %q, want spec.nodeName=node1", watchOpts)
	}
	mu.Unlock()
	// The cache holds slim metadata.
	if objs := r.informer.GetStore().List(); len(objs) != 2 {
		t.Errorf("store holds %d pods, want this node's 2", len(objs))
	} else {
		for _, o := range objs {
			p := o.(*metav1.PartialObjectMetadata)
			if len(p.Labels) != 0 || len(p.ManagedFields) != 0 || len(p.Annotations) > 1 {
				t.Errorf("cached pod not slimmed: %+v", p)
			}
		}
	}

	pods := client.Resource(podsResource).Namespace("shop")
	fakePods := pods.(metadatafake.MetadataClient)
	// Add.
	if _, err := fakePods.CreateFake(pod("shop", "api-0", u3, "node1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "added pod", lookupIs(r, u3, "shop", "api-0"))
	// Update: a pending pod is bound to this node.
	pending := pod("shop", "batch-0", u4, "")
	if _, err := fakePods.CreateFake(pending, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, _, ok := r.Lookup(u4); ok {
		t.Error("unscheduled pod attributed")
	}
	pending.Labels[fakeNodeLabel] = "node1"
	if _, err := fakePods.UpdateFake(pending, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod bound to the node", lookupIs(r, u4, "shop", "batch-0"))
	// Delete.
	if err := pods.Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted pod gone", lookupIs(r, u1, "", ""))
	if _, _, ok := r.Lookup(u3); !ok {
		t.Error("deleting web-0 lost api-0")
	}
	if got := rec.Records(); len(got) > 0 {
		t.Errorf("logged %q", got)
	}
	if _, _, ok := r.Lookup(""); ok {
		t.Error("empty UID found")
	}
}

// writeKubeconfig writes a kubeconfig for srv (trusting its certificate
// when it serves TLS) and returns its path.
func writeKubeconfig(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	ca := ""
	if c := srv.Certificate(); c != nil {
		ca = "\n    certificate-authority-data: " + base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s%s
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
users:
- name: test
  user:
    token: test-token
`, srv.URL, ca)
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Media types a metadata client accepts from the API server, for a list
// and for a watch (and a get).
const (
	metaListJSON = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
	metaJSON     = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
)

// accepts reports whether an Accept header lists mediaType.
func accepts(header, mediaType string) bool {
	for _, m := range strings.Split(header, ",") {
		if strings.TrimSpace(m) == mediaType {
			return true
		}
	}
	return false
}

// TestResolverHTTPAPI runs the Resolver against an httptest API server
// (TLS, bearer token) through a kubeconfig. The server answers only
// metadata (PartialObjectMetadataList and PartialObjectMetadata in JSON,
// as a real API server does for such an Accept header) and refuses
// anything else with 406. It speaks both ways client-go may start an
// informer: a streaming watch list (sendInitialEvents, ended by a
// bookmark) and, where the server refuses that as an older one does, a
// list then a watch. The requests must be node-scoped, authenticated and
// ask for metadata, and the pods found.
func TestResolverHTTPAPI(t *testing.T) {
	t.Run("watch list", func(t *testing.T) { testResolverHTTPAPI(t, true) })
	t.Run("list then watch", func(t *testing.T) { testResolverHTTPAPI(t, false) })
}

func testResolverHTTPAPI(t *testing.T, watchList bool) {
	const u, mirrorUID = "66666666-6666-6666-6666-666666666666", "77777777-7777-7777-7777-777777777777"
	var mu sync.Mutex
	var reqs []string
	stop := make(chan struct{})
	partial := metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}
	items := []metav1.PartialObjectMetadata{
		{TypeMeta: partial, ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "frontend-7d9", UID: u, ResourceVersion: "9"}},
		{TypeMeta: partial, ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "etcd-node-a", UID: mirrorUID, ResourceVersion: "10",
			Annotations: map[string]string{mirrorAnnotation: hash, "kubernetes.io/config.source": "file"}}},
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		accept := req.Header.Get("Accept")
		mu.Lock()
		reqs = append(reqs, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery+" auth="+req.Header.Get("Authorization")+" accept="+accept)
		mu.Unlock()
		if req.URL.Path != "/api/v1/pods" {
			http.NotFound(w, req)
			return
		}
		q := req.URL.Query()
		if q.Get("watch") != "true" {
			if !accepts(accept, metaListJSON) {
				http.Error(w, "only metadata here", http.StatusNotAcceptable)
				return
			}
			w.Header().Set("Content-Type", metaListJSON)
			json.NewEncoder(w).Encode(metav1.PartialObjectMetadataList{
				TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"},
				ListMeta: metav1.ListMeta{ResourceVersion: "10"},
				Items:    items,
			})
			return
		}
		if !accepts(accept, metaJSON) {
			http.Error(w, "only metadata here", http.StatusNotAcceptable)
			return
		}
		if q.Get("sendInitialEvents") == "true" && !watchList {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status: metav1.StatusFailure, Reason: metav1.StatusReasonBadRequest, Code: http.StatusBadRequest,
				Message: "sendInitialEvents is not supported here"})
			return
		}
		w.Header().Set("Content-Type", metaJSON)
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		if q.Get("sendInitialEvents") == "true" {
			for i := range items {
				enc.Encode(map[string]any{"type": "ADDED", "object": &items[i]})
			}
			enc.Encode(map[string]any{"type": "BOOKMARK", "object": metav1.PartialObjectMetadata{TypeMeta: partial,
				ObjectMeta: metav1.ObjectMeta{ResourceVersion: "10", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
			}})
		}
		w.(http.Flusher).Flush()
		select {
		case <-req.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)

	rec := &fixture.LogRecorder{}
	r, err := New(ResolverOptions{Kubeconfig: writeKubeconfig(t, srv), NodeName: "node-a", Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.Start(ctx)
	eventually(t, "sync", r.Synced)
	if ns, name, ok := r.Lookup(u); !ok || ns != "web" || name != "frontend-7d9" {
		t.Errorf("lookup: %q %q %v", ns, name, ok)
	}
	if ns, name, ok := r.Lookup(hash); !ok || ns != "kube-system" || name != "etcd-node-a" {
		t.Errorf("static pod by its cgroup UID: %q %q %v", ns, name, ok)
	}
	cancel()
	r.Shutdown()
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) == 0 {
		t.Fatal("no requests")
	}
	listed := false
	for _, q := range reqs {
		listed = listed || !strings.Contains(q, "watch=true")
		if !strings.Contains(q, "fieldSelector=spec.nodeName%3Dnode-a") || !strings.Contains(q, "auth=Bearer test-token") ||
			!strings.Contains(q, "as=PartialObjectMetadata") {
			t.Errorf("request %q: want the node field selector, the token and metadata only", q)
		}
	}
	if listed == watchList {
		t.Errorf("watch list served %v, but a plain list was asked: %v", watchList, listed)
	}
	t.Logf("requests: %q", reqs)
	if got := rec.Records(); len(got) > 0 {
		t.Errorf("logged %q", got)
	}
}

// TestResolverUnreachable points the Resolver at a closed port: one
// warning, however often client-go retries, and no names.
func TestResolverUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := &httptest.Server{URL: "https://" + l.Addr().String()}
	l.Close()
	rec := &fixture.LogRecorder{}
	r, err := New(ResolverOptions{Kubeconfig: writeKubeconfig(t, dead), NodeName: "n", Logger: slog.New(rec), SyncTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r.Shutdown() }()
	r.Start(ctx)
	r.Start(ctx)                // twice: no-op
	time.Sleep(3 * time.Second) // several retries and the sync timeout
	if got := rec.Records(); len(got) != 1 || !strings.Contains(got[0], "inode only") {
		t.Errorf("logged %q, want exactly one warning", got)
	}
	if r.Synced() || r.Degraded() {
		t.Errorf("synced %v degraded %v", r.Synced(), r.Degraded())
	}
	if _, _, ok := r.Lookup("66666666-6666-6666-6666-666666666666"); ok {
		t.Error("name without an API")
	}
}

func TestResolverDegraded(t *testing.T) {
	t.Setenv(NodeNameEnv, "")
	rec := &fixture.LogRecorder{}
	r, err := New(ResolverOptions{Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(context.Background())
	if !r.Degraded() || len(rec.Records()) != 1 {
		t.Errorf("no node name: degraded %v, logged %q", r.Degraded(), rec.Records())
	}

	// A node name but no cluster: no in-cluster configuration.
	t.Setenv(NodeNameEnv, "node1")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	rec = &fixture.LogRecorder{}
	r, err = New(ResolverOptions{Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Degraded() || len(rec.Records()) != 1 {
		t.Errorf("outside a cluster: degraded %v, logged %q", r.Degraded(), rec.Records())
	}
	if _, _, ok := r.Lookup("x"); ok {
		t.Error("degraded resolver answered")
	}

	// An explicit kubeconfig that cannot be loaded is an error.
	if _, err := New(ResolverOptions{Kubeconfig: filepath.Join(t.TempDir(), "missing"), NodeName: "n"}); err == nil {
		t.Error("missing kubeconfig: no error")
	}
}
