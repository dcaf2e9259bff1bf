package main

import (
	"bufio"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestConnBudget(t *testing.T) {
	for _, tc := range []struct {
		want, listeners int
		nofile          uint64
		open            int
		got             int
	}{
		{64, 1, 1 << 20, 30, 64},   // the usual: the runtime raised the soft limit
		{64, 1, 0, 30, 64},         // unknown limit
		{64, 1, 1 << 40, 30, 64},   // unlimited
		{64, 1, 64, 0, 48},         // the probe's limit, nothing open yet
		{64, 1, 64, 36, 12},        // ... with 36 open (eBPF maps and programs)
		{64, 2, 64, 0, 24},         // shared between listeners
		{64, 1, 80, 0, 64},         // fits exactly
		{64, 1, 16, 0, 1},          // never below one
		{64, 1, 64, 60, 1},         // nothing left but one
		{1000, 1, 1024, 0, 1000},   // a 1024 limit, the flag below it
		{1000, 1, 1024, 40, 968},   // ... with 40 open
		{10, 3, 1 << 20, 30, 10},   // the flag when it fits
		{64, 0, 64, 30, 64},        // no listeners: nothing to share
		{64, 4, 1 << 10, 32, 64},   // 1024 over four listeners: 244 each
		{300, 4, 1 << 10, 32, 244}, // ... and the flag above it
	} {
		if got := connBudget(tc.want, tc.listeners, tc.nofile, tc.open); got != tc.got {
			t.Errorf("connBudget(%d, %d, %d, %d) = %d, want %d", tc.want, tc.listeners, tc.nofile, tc.open, got, tc.got)
		}
	}
}

func TestNamespaceFDBudget(t *testing.T) {
	for _, tc := range []struct {
		nofile      uint64
		open, conns int
		got         int
	}{
		{200, 30, 64, 200 - 30 - 64 - fdReserve}, // TestNetnsAllUnderFDLimit's limit
		{64, 30, 18, 0},                          // the HTTP connections took it all
		{64, 60, 1, 0},                           // never below zero
		{0, 30, 64, math.MaxInt},                 // unknown limit
		{1 << 40, 30, 64, math.MaxInt},           // unlimited
	} {
		if got := namespaceFDBudget(tc.nofile, tc.open, tc.conns); got != tc.got {
			t.Errorf("namespaceFDBudget(%d, %d, %d) = %d, want %d", tc.nofile, tc.open, tc.conns, got, tc.got)
		}
	}
}

// TestAuthLimiter checks the bound in process: with both places held by
// slow checks, a request with new credentials is answered 429 within the
// wait and counted, a second one from the same address at once; known
// credentials pass; requests without credentials are never held.
func TestAuthLimiter(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pass, _ := r.BasicAuth(); pass == "slow" {
			entered.Done()
			<-release
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if p, ok := r.Context().Value(authPassedKey{}).(*authPassed); ok {
			p.ok = true // as markAuthenticated does once the toolkit lets it in
		}
	})
	throttled := prometheus.NewCounter(prometheus.CounterOpts{Name: "t"})
	a := &authLimiter{slots: make(chan struct{}, 2), wait: 100 * time.Millisecond, known: map[[32]byte]time.Time{}, perSource: map[string]int{}, throttled: throttled}
	h := a.wrap(inner)
	req := func(addr, pass string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.RemoteAddr = addr
		if pass != "" {
			r.SetBasicAuth("u", pass)
		}
		return r
	}
	serve := func(r *http.Request) int {
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, r)
		return rr.Code
	}

	if code := serve(req("10.0.0.9:1", "good")); code != http.StatusOK {
		t.Fatalf("good credentials: %d", code)
	}
	// Two slow checks from two addresses hold both places.
	entered.Add(2)
	var wg sync.WaitGroup
	for _, addr := range []string{"10.0.0.1:1", "10.0.0.2:1"} {
		wg.Go(func() { serve(req(addr, "slow")) })
	}
	entered.Wait()
	start := time.Now()
	if code := serve(req("10.0.0.3:1", "new")); code != http.StatusTooManyRequests {
		t.Errorf("new credentials with every place held: %d, want 429", code)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 5*time.Second {
		t.Errorf("429 after %v, want after the 100ms wait", el)
	}
	start = time.Now()
	if code := serve(req("10.0.0.1:2", "other")); code != http.StatusTooManyRequests {
		t.Errorf("second check from one address: %d, want 429", code)
	}
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Errorf("second check from one address answered after %v, want at once", el)
	}
	if code := serve(req("10.0.0.4:1", "good")); code != http.StatusOK {
		t.Errorf("known credentials with every place held: %d, want 200", code)
	}
	if code := serve(req("10.0.0.4:1", "")); code != http.StatusOK {
		t.Errorf("no credentials with every place held: %d, want 200", code)
	}
	if v := testutil.ToFloat64(throttled); v != 2 {
		t.Errorf("throttled = %v, want 2", v)
	}
	close(release)
	wg.Wait()
	if code := serve(req("10.0.0.3:1", "new")); code != http.StatusOK {
		t.Errorf("new credentials with the places free: %d, want 200", code)
	}
}

// TestConnLimiterEvictsIdle serves through a connLimiter of two places:
// two idle keep-alive clients fill it, a third client closes the one idle
// the longest and is served, and a connection in a request is never
// closed for room.
func TestConnLimiterEvictsIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newWebMetrics()
	cl := newConnLimiter(ln, 2, m)
	block := make(chan struct{})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" {
				<-block
			}
		}),
		ConnState: cl.connState,
	}
	go srv.Serve(cl)
	defer srv.Close()
	addr := ln.Addr().String()

	// request sends GET path on c and reads the answer's status line.
	request := func(c net.Conn, path string) error {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		ne, ok := errors.AsType[net.Error](err)
		return err != nil && !(ok && ne.Timeout())
	}

	first, second := dial(), dial()
	if err := request(first, "/"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := request(second, "/"); err != nil {
		t.Fatal(err)
	}
	third := dial()
	if err := request(third, "/"); err != nil {
		t.Fatalf("third client with two idle ones holding the places: %v", err)
	}
	if !closed(first) {
		t.Error("the connection idle the longest is still open")
	}
	if v := testutil.ToFloat64(m.evicted); v != 1 {
		t.Errorf("evicted = %v, want 1", v)
	}

	// second blocks in a request; third is idle: a fourth client closes
	// third, never second.
	errc := make(chan error, 1)
	go func() { errc <- request(second, "/block") }()
	time.Sleep(100 * time.Millisecond)
	fourth := dial()
	if err := request(fourth, "/"); err != nil {
		t.Fatalf("fourth client: %v", err)
	}
	if !closed(third) {
		t.Error("the idle connection was not the one closed")
	}
	close(block)
	if err := <-errc; err != nil {
		t.Errorf("the connection in a request was closed: %v", err)
	}
	if v := testutil.ToFloat64(m.conns); v != 2 {
		t.Errorf("tcpstate_http_connections = %v, want 2", v)
	}
}
