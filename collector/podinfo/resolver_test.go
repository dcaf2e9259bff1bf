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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// logRecorder keeps the messages of records at or above Warn.
type logRecorder struct {
	mu   sync.Mutex
	recs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		l.mu.Lock()
		l.recs = append(l.recs, r.Level.String()+" "+r.Message)
		l.mu.Unlock()
	}
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
func (l *logRecorder) records() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

func pod(ns, name, uid, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
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

// TestResolverFakeClientset drives the informer with client-go's fake
// clientset: pods on this node are found by UID (a static pod by the UID
// in its cgroup), pods of other nodes are not, and adds, updates and
// deletes arrive.
func TestResolverFakeClientset(t *testing.T) {
	const (
		u1, u2, u3, u4 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222",
			"33333333-3333-3333-3333-333333333333", "44444444-4444-4444-4444-444444444444"
		mirrorUID = "55555555-5555-5555-5555-555555555555"
	)
	mirror := pod("kube-system", "etcd-node1", mirrorUID, "node1")
	mirror.Annotations = map[string]string{mirrorAnnotation: hash, "other": "dropped"}
	client := fake.NewClientset(pod("shop", "web-0", u1, "node1"), pod("shop", "web-1", u2, "node2"), mirror)
	var listOpts []string
	var mu sync.Mutex
	watching := make(chan struct{})
	var once sync.Once
	client.PrependReactor("list", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		listOpts = append(listOpts, a.(clienttesting.ListActionImpl).GetListOptions().FieldSelector)
		mu.Unlock()
		return false, nil, nil
	})
	client.PrependWatchReactor("pods", func(a clienttesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(a.GetResource(), a.GetNamespace(), a.(clienttesting.WatchActionImpl).ListOptions)
		once.Do(func() { close(watching) })
		return true, w, err
	})

	rec := &logRecorder{}
	r := NewWithClient(client, Config{NodeName: "node1", Logger: slog.New(rec)})
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
	mu.Unlock()
	// The cache holds slim pods.
	if objs := r.informer.GetStore().List(); len(objs) == 0 {
		t.Error("empty store")
	} else {
		for _, o := range objs {
			p := o.(*corev1.Pod)
			if len(p.Spec.Containers) != 0 || len(p.Annotations) > 1 {
				t.Errorf("cached pod not slimmed: %+v", p)
			}
		}
	}

	pods := client.CoreV1().Pods("shop")
	// Add.
	if _, err := pods.Create(ctx, pod("shop", "api-0", u3, "node1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "added pod", lookupIs(r, u3, "shop", "api-0"))
	// Update: a pending pod is bound to this node.
	pending := pod("shop", "batch-0", u4, "")
	if _, err := pods.Create(ctx, pending, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, _, ok := r.Lookup(u4); ok {
		t.Error("unscheduled pod attributed")
	}
	pending.Spec.NodeName = "node1"
	if _, err := pods.Update(ctx, pending, metav1.UpdateOptions{}); err != nil {
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
	if got := rec.records(); len(got) > 0 {
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

// TestResolverHTTPAPI runs the Resolver against an httptest API server
// (TLS, bearer token) through a kubeconfig. The server speaks both ways
// client-go may start an informer: a streaming watch list
// (sendInitialEvents, ended by a bookmark) and a list then a watch. The
// requests must be node-scoped and authenticated, and the pods found.
func TestResolverHTTPAPI(t *testing.T) {
	const u = "66666666-6666-6666-6666-666666666666"
	var mu sync.Mutex
	var reqs []string
	stop := make(chan struct{})
	item := pod("web", "frontend-7d9", u, "node-a")
	item.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
	item.ResourceVersion = "10"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		reqs = append(reqs, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery+" auth="+req.Header.Get("Authorization"))
		mu.Unlock()
		if req.URL.Path != "/api/v1/pods" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		q := req.URL.Query()
		if q.Get("watch") != "true" {
			json.NewEncoder(w).Encode(corev1.PodList{
				TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"},
				ListMeta: metav1.ListMeta{ResourceVersion: "10"},
				Items:    []corev1.Pod{*item},
			})
			return
		}
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		if q.Get("sendInitialEvents") == "true" {
			enc.Encode(map[string]any{"type": "ADDED", "object": item})
			enc.Encode(map[string]any{"type": "BOOKMARK", "object": map[string]any{
				"kind": "Pod", "apiVersion": "v1",
				"metadata": map[string]any{"resourceVersion": "10", "annotations": map[string]string{metav1.InitialEventsAnnotationKey: "true"}},
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

	rec := &logRecorder{}
	r, err := New(Config{Kubeconfig: writeKubeconfig(t, srv), NodeName: "node-a", Logger: slog.New(rec)})
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
	cancel()
	r.Shutdown()
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) == 0 {
		t.Fatal("no requests")
	}
	for _, q := range reqs {
		if !strings.Contains(q, "fieldSelector=spec.nodeName%3Dnode-a") || !strings.Contains(q, "auth=Bearer test-token") {
			t.Errorf("request %q: want the node field selector and the token", q)
		}
	}
	t.Logf("requests: %q", reqs)
	if got := rec.records(); len(got) > 0 {
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
	rec := &logRecorder{}
	r, err := New(Config{Kubeconfig: writeKubeconfig(t, dead), NodeName: "n", Logger: slog.New(rec), SyncTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); r.Shutdown() }()
	r.Start(ctx)
	r.Start(ctx)                // twice: no-op
	time.Sleep(3 * time.Second) // several retries and the sync timeout
	if got := rec.records(); len(got) != 1 || !strings.Contains(got[0], "inode only") {
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
	rec := &logRecorder{}
	r, err := New(Config{Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	r.Start(context.Background())
	if !r.Degraded() || len(rec.records()) != 1 {
		t.Errorf("no node name: degraded %v, logged %q", r.Degraded(), rec.records())
	}

	// A node name but no cluster: no in-cluster configuration.
	t.Setenv(NodeNameEnv, "node1")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	rec = &logRecorder{}
	r, err = New(Config{Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Degraded() || len(rec.records()) != 1 {
		t.Errorf("outside a cluster: degraded %v, logged %q", r.Degraded(), rec.records())
	}
	if _, _, ok := r.Lookup("x"); ok {
		t.Error("degraded resolver answered")
	}

	// An explicit kubeconfig that cannot be loaded is an error.
	if _, err := New(Config{Kubeconfig: filepath.Join(t.TempDir(), "missing"), NodeName: "n"}); err == nil {
		t.Error("missing kubeconfig: no error")
	}
}
