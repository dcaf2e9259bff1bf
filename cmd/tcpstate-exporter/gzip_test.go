package main

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestAcceptsGzip(t *testing.T) {
	for _, c := range []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"gzip"}, true},
		{[]string{"GZIP"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"deflate, gzip;q=1.0, *;q=0.5"}, true}, // Prometheus's header
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.000"}, false},
		{[]string{"gzip;q=bad"}, false},
		{[]string{"identity"}, false},
		{[]string{"br, *"}, true},
		{[]string{"*;q=0"}, false},
		{[]string{"gzip;q=0, *"}, false},
		{[]string{"zstd", "gzip;q=0.1"}, true},
	} {
		if got := acceptsGzip(c.header); got != c.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", c.header, got, c.want)
		}
	}
}

// The metrics handler compresses for clients that accept gzip, and only
// for them, and its error responses stay readable.
func TestMetricsGzip(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tcpstate_test_value", Help: "A value."})
	g.Set(42)
	reg.MustRegister(g)
	h := withGzip(promhttp.HandlerFor(reg, promhttp.HandlerOpts{DisableCompression: true}), 2)

	get := func(accept string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}

	resp := get("gzip")
	if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", ce)
	}
	if v := resp.Header.Get("Vary"); v != "Accept-Encoding" {
		t.Errorf("Vary %q", v)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "tcpstate_test_value 42\n") {
		t.Errorf("decompressed body lacks the gauge:\n%s", body)
	}

	for _, accept := range []string{"", "gzip;q=0", "identity"} {
		resp := get(accept)
		if ce := resp.Header.Get("Content-Encoding"); ce != "" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want none", accept, ce)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "tcpstate_test_value 42\n") {
			t.Errorf("Accept-Encoding %q: body lacks the gauge:\n%s", accept, body)
		}
	}

	// An error response (here: a request over the in-flight limit) is
	// compressed as announced.
	block, entered := make(chan struct{}), make(chan struct{})
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(blockingCollector{entered, block})
	h = withGzip(promhttp.HandlerFor(reg2, promhttp.HandlerOpts{DisableCompression: true, MaxRequestsInFlight: 1}), 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/metrics", nil))
	}()
	<-entered
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	h.ServeHTTP(rec, req)
	close(block)
	<-done
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("over the limit: status %d, want 503", rec.Code)
	}
	if ce := rec.Header().Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("error response Content-Encoding %q, want gzip", ce)
	}
	zr, err = gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(zr)
	if err != nil || !strings.Contains(string(body), "Limit of concurrent requests") {
		t.Errorf("error body %q (%v)", body, err)
	}
}

// blockingCollector is unchecked (it describes nothing); its Collect says it
// was entered and waits.
type blockingCollector struct{ entered, block chan struct{} }

func (blockingCollector) Describe(chan<- *prometheus.Desc) {}

func (b blockingCollector) Collect(chan<- prometheus.Metric) {
	close(b.entered)
	<-b.block
}

// With every gzip writer in use, a response goes out uncompressed and
// whole; the writers are reused afterwards.
func TestGzipWritersBounded(t *testing.T) {
	wrote, release := make(chan struct{}), make(chan struct{})
	h := withGzip(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("first part\n"))
		if r.URL.Query().Get("hold") != "" {
			close(wrote)
			<-release
		}
		_, _ = w.Write([]byte("second part\n"))
	}), 1)
	get := func(target string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	body := func(rec *httptest.ResponseRecorder) string {
		if rec.Header().Get("Content-Encoding") != "gzip" {
			return rec.Body.String()
		}
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	held := make(chan *httptest.ResponseRecorder)
	go func() { held <- get("/metrics?hold=1") }()
	<-wrote
	second := get("/metrics")
	close(release)
	first := <-held
	if ce := first.Header().Get("Content-Encoding"); ce != "gzip" {
		t.Errorf("first response: Content-Encoding %q, want gzip", ce)
	}
	if ce := second.Header().Get("Content-Encoding"); ce != "" {
		t.Errorf("response while the only writer was busy: Content-Encoding %q, want none", ce)
	}
	for i, rec := range []*httptest.ResponseRecorder{first, second, get("/metrics")} {
		if got := body(rec); got != "first part\nsecond part\n" {
			t.Errorf("response %d: body %q", i, got)
		}
	}
	if ce := get("/metrics").Header().Get("Content-Encoding"); ce != "gzip" {
		t.Errorf("after the busy writer was returned: Content-Encoding %q, want gzip", ce)
	}
}
