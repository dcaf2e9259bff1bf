package alerts

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// amServer records what an Alertmanager-like HTTP server receives.
type amServer struct {
	mu     sync.Mutex
	posts  []post
	status int
	got    chan struct{}
}

type post struct {
	path, user, pass, contentType string
	alerts                        []map[string]any
}

func newAMServer(t *testing.T, status int) (*amServer, *httptest.Server) {
	am := &amServer{status: status, got: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p := post{path: r.URL.Path, contentType: r.Header.Get("Content-Type")}
		p.user, p.pass, _ = r.BasicAuth()
		if err := json.Unmarshal(body, &p.alerts); err != nil {
			t.Errorf("body is not a JSON array of alerts: %v: %s", err, body)
		}
		am.mu.Lock()
		am.posts = append(am.posts, p)
		code := am.status
		am.mu.Unlock()
		w.WriteHeader(code)
		if code != http.StatusOK {
			_, _ = w.Write([]byte("bad alert"))
		}
		am.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return am, srv
}

func (am *amServer) wait(t *testing.T, n int) []post {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		am.mu.Lock()
		if len(am.posts) >= n {
			out := append([]post(nil), am.posts...)
			am.mu.Unlock()
			return out
		}
		am.mu.Unlock()
		select {
		case <-am.got:
		case <-deadline:
			t.Fatalf("timed out waiting for %d posts", n)
		}
	}
}

// waitCounter polls a metric for up to 5 s until it reaches want (counters
// move after the server has answered) and returns its value.
func waitCounter(c prometheus.Collector, want float64) float64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := testutil.ToFloat64(c)
		if v == want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runNotifier(t *testing.T, n *Notifier) {
	fixture.Background(t, "Notifier.Run", n.Run)
}

func TestNotifierPostsV2Alerts(t *testing.T) {
	am, srv := newAMServer(t, http.StatusOK)
	base := strings.Replace(srv.URL, "http://", "http://tcp:secret@", 1) + "/am/"
	n, err := NewNotifier(NotifierOptions{
		URLs:           []string{base},
		ExternalLabels: map[string]string{"instance": "node-1", "severity": "ignored", "empty": ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.URLs(); len(got) != 1 || strings.Contains(got[0], "secret") {
		t.Errorf("URLs() = %v, want one with the password redacted", got)
	}
	runNotifier(t, n)

	starts := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	n.Send(PostableAlert{
		Labels:       map[string]string{"alertname": "TCPSynFlood", "severity": "critical"},
		Annotations:  map[string]string{"summary": "SYN flood"},
		StartsAt:     starts,
		EndsAt:       starts.Add(4 * time.Minute),
		GeneratorURL: "http://node-1:9874/alerts",
	})
	p := am.wait(t, 1)[0]
	if p.path != "/am/api/v2/alerts" || p.user != "tcp" || p.pass != "secret" || p.contentType != "application/json" {
		t.Errorf("post to %s as %s:%s (%s)", p.path, p.user, p.pass, p.contentType)
	}
	if len(p.alerts) != 1 {
		t.Fatalf("posted %d alerts", len(p.alerts))
	}
	a := p.alerts[0]
	labels, _ := a["labels"].(map[string]any)
	if labels["alertname"] != "TCPSynFlood" || labels["severity"] != "critical" || labels["instance"] != "node-1" || len(labels) != 3 {
		t.Errorf("labels %v: want the alert's plus instance, external labels never overriding", labels)
	}
	if a["startsAt"] != "2025-03-04T05:06:07Z" || a["endsAt"] != "2025-03-04T05:10:07Z" || a["generatorURL"] != "http://node-1:9874/alerts" {
		t.Errorf("alert %v", a)
	}
	if ann, _ := a["annotations"].(map[string]any); ann["summary"] != "SYN flood" {
		t.Errorf("annotations %v", a["annotations"])
	}
	label := n.URLs()[0]
	if v := waitCounter(n.sent.WithLabelValues(label), 1); v != 1 {
		t.Errorf("notifications_total = %v, want 1", v)
	}
	if v := testutil.ToFloat64(n.errs.WithLabelValues(label)); v != 0 {
		t.Errorf("errors_total = %v, want 0", v)
	}
}

func TestNotifierCountsErrorsPerURL(t *testing.T) {
	good, goodSrv := newAMServer(t, http.StatusOK)
	bad, badSrv := newAMServer(t, http.StatusBadRequest)
	n, err := NewNotifier(NotifierOptions{URLs: []string{goodSrv.URL, badSrv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	runNotifier(t, n)
	n.Send(PostableAlert{Labels: map[string]string{"alertname": "A"}}, PostableAlert{Labels: map[string]string{"alertname": "B"}})
	good.wait(t, 1)
	bad.wait(t, 1)
	waitCounter(n.errs.WithLabelValues(badSrv.URL), 2)
	waitCounter(n.sent.WithLabelValues(goodSrv.URL), 2)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n)
	want := `
# HELP tcpstate_alertmanager_notifications_errors_total Alerts in posts to an Alertmanager that failed (network error, timeout or non-2xx answer).
# TYPE tcpstate_alertmanager_notifications_errors_total counter
tcpstate_alertmanager_notifications_errors_total{url="` + badSrv.URL + `"} 2
tcpstate_alertmanager_notifications_errors_total{url="` + goodSrv.URL + `"} 0
# HELP tcpstate_alertmanager_notifications_total Alerts posted to an Alertmanager (successfully or not).
# TYPE tcpstate_alertmanager_notifications_total counter
tcpstate_alertmanager_notifications_total{url="` + badSrv.URL + `"} 2
tcpstate_alertmanager_notifications_total{url="` + goodSrv.URL + `"} 2
# HELP tcpstate_alertmanager_notifications_dropped_total Alerts discarded without being posted because an Alertmanager's queue was full.
# TYPE tcpstate_alertmanager_notifications_dropped_total counter
tcpstate_alertmanager_notifications_dropped_total{url="` + badSrv.URL + `"} 0
tcpstate_alertmanager_notifications_dropped_total{url="` + goodSrv.URL + `"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"tcpstate_alertmanager_notifications_total", "tcpstate_alertmanager_notifications_errors_total", "tcpstate_alertmanager_notifications_dropped_total"); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(n)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestNotifierQueueDropsOldest(t *testing.T) {
	am, srv := newAMServer(t, http.StatusOK)
	n, err := NewNotifier(NotifierOptions{URLs: []string{srv.URL}, QueueCapacity: 3, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	// Queue before the sender runs: five alerts into three places.
	for _, name := range []string{"a1", "a2", "a3", "a4", "a5"} {
		n.Send(PostableAlert{Labels: map[string]string{"alertname": name}})
	}
	if v := testutil.ToFloat64(n.dropped.WithLabelValues(srv.URL)); v != 2 {
		t.Errorf("dropped = %v, want 2", v)
	}
	if v := testutil.ToFloat64(n.queueLen.WithLabelValues(srv.URL)); v != 3 {
		t.Errorf("queue length = %v, want 3", v)
	}
	runNotifier(t, n)
	p := am.wait(t, 1)[0]
	var names []string
	for _, a := range p.alerts {
		names = append(names, a["labels"].(map[string]any)["alertname"].(string))
	}
	if strings.Join(names, ",") != "a3,a4,a5" {
		t.Errorf("posted %v, want the newest three", names)
	}
}

func TestNotifierRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"ftp://am:9093", "am:9093", "http://", "http://am:9093/?x=1", "http://a b/"} {
		if _, err := NewNotifier(NotifierOptions{URLs: []string{u}}); err == nil {
			t.Errorf("NewNotifier(%q) accepted it", u)
		}
	}
}

func TestNotifierStopsWithRequestInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	before := runtime.NumGoroutine()
	n, err := NewNotifier(NotifierOptions{URLs: []string{srv.URL, srv.URL + "/second"}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	run := fixture.Background(t, "Notifier.Run", n.Run)
	n.Send(PostableAlert{Labels: map[string]string{"alertname": "A"}})
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the server")
	}
	if !run.Stop(5 * time.Second) {
		t.Fatal("Run did not return within 5s of cancel while a request hung")
	}
	srv.CloseClientConnections()
	// Idle keep-alive connections of the default transport may linger a
	// moment; the sender goroutines must not.
	n.opts.Client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before+2 {
		t.Errorf("%d goroutines after Run returned, %d before", g, before)
	}
}

// TestNotifierTricklingAnswerFails answers 200 at once but sends the body a
// byte every 100 ms, longer than the timeout: the post is a failure,
// counted as an error, and the sender is free again within a bound.
func TestNotifierTricklingAnswerFails(t *testing.T) {
	stop := make(chan struct{})
	var posts sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		defer posts.Done()
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		for range 100 {
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}))
	defer srv.Close()
	defer close(stop)
	const timeout = 300 * time.Millisecond
	n, err := NewNotifier(NotifierOptions{URLs: []string{srv.URL}, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	runNotifier(t, n)
	start := time.Now()
	n.Send(PostableAlert{Labels: map[string]string{"alertname": "A"}})
	if v := waitCounter(n.errs.WithLabelValues(srv.URL), 1); v != 1 {
		t.Fatalf("errors_total = %v after a 2xx answer trickling past the %v timeout, want 1", v, timeout)
	}
	// The whole body takes 10 s; the failure is known near the timeout
	// (the bound is generous for a loaded machine).
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("failure counted after %v, want about the %v timeout", el, timeout)
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues(srv.URL)); v != 1 {
		t.Errorf("notifications_total = %v, want 1", v)
	}
}

// TestNotifierQueueCoalesces queues the same alerts again and again while
// the Alertmanager is unreachable to the sender (it is not running yet):
// the queue holds one copy of each, the newest, in the place of the first.
func TestNotifierQueueCoalesces(t *testing.T) {
	am, srv := newAMServer(t, http.StatusOK)
	n, err := NewNotifier(NotifierOptions{URLs: []string{srv.URL}, QueueCapacity: 100, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)
	for round := range 50 {
		ends := t0.Add(time.Duration(round) * time.Minute)
		n.Send(
			PostableAlert{Labels: map[string]string{"alertname": "A", "port": "80"}, EndsAt: ends},
			PostableAlert{Labels: map[string]string{"alertname": "B"}, EndsAt: ends},
			PostableAlert{Labels: map[string]string{"alertname": "A", "port": "443"}, EndsAt: ends},
		)
	}
	// Within one Send too.
	n.Send(PostableAlert{Labels: map[string]string{"alertname": "C"}, EndsAt: t0}, PostableAlert{Labels: map[string]string{"alertname": "C"}, EndsAt: t0.Add(time.Hour)})
	if v := testutil.ToFloat64(n.queueLen.WithLabelValues(srv.URL)); v != 4 {
		t.Errorf("queue length = %v after 151 sends of 4 alerts, want 4", v)
	}
	if v := testutil.ToFloat64(n.dropped.WithLabelValues(srv.URL)); v != 0 {
		t.Errorf("dropped = %v, want 0", v)
	}
	runNotifier(t, n)
	p := am.wait(t, 1)[0]
	var got []string
	for _, a := range p.alerts {
		l := a["labels"].(map[string]any)
		got = append(got, fmt.Sprintf("%v%v@%v", l["alertname"], l["port"], a["endsAt"]))
	}
	want := []string{"A80@2025-03-04T05:49:00Z", "B<nil>@2025-03-04T05:49:00Z", "A443@2025-03-04T05:49:00Z", "C<nil>@2025-03-04T06:00:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("posted %v, want %v", got, want)
	}
}
