//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// The HTTP hardening tests probe the real binary in a namespace of its
// own: idle keep-alive clients, a descriptor limit, slow bodies, odd
// methods, bad TLS handshakes, SIGHUP, a flood of wrong passwords.

// openFDs counts the open file descriptors of a process.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("reading the exporter's fds: %v", err)
	}
	return len(ents)
}

// idleClients opens n connections to the exporter inside ns, sends one
// GET /-/healthy on each and reads the answer, and keeps the connections
// open without a further request (idle keep-alive clients). It returns the
// connections and how many got a 200. Connections the server closes later
// stay in the list.
func idleClients(t *testing.T, ctx context.Context, ns *fixture.Netns, n int) ([]net.Conn, int) {
	t.Helper()
	conns := make([]net.Conn, n)
	var ok atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := ns.DialContext(ctx, "tcp", exporterAddr)
			if err != nil {
				return
			}
			conns[i] = c
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			if _, err := io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok.Add(1)
			}
			_ = c.SetDeadline(time.Time{})
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	return conns, int(ok.Load())
}

// closedByServer counts the connections on which a read returns EOF (or
// a reset) within wait: the server has closed them.
func closedByServer(conns []net.Conn, wait time.Duration) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(wait))
			var b [1]byte
			if _, err := c.Read(b[:]); err != nil {
				if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// metricValue scrapes the exporter and returns the sum of a family.
func metricValue(t *testing.T, c *http.Client, name string) float64 {
	t.Helper()
	code, body, err := get(c, "http://"+exporterAddr+"/metrics", "", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape: status %d, %v", code, err)
	}
	v, ok := metricSum(parseMetrics(t, body), name, nil)
	if !ok {
		t.Fatalf("no %s in /metrics", name)
	}
	return v
}

// httpExporter runs the exporter in a new namespace, behind wrapper (may
// be nil), listening on exporterAddr with args, and waits until it is
// ready over plain HTTP. The context ends with the test.
func httpExporter(t *testing.T, wrapper []string, args ...string) (context.Context, *fixture.Netns, *fixture.Proc, *http.Client) {
	t.Helper()
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	ns := fixture.NewNetnsPrefix(t, hardenNetnsPrefix)
	p := startExporter(t, ctx, ns, bin, wrapper, append([]string{"--web.listen-address=" + exporterAddr}, args...)...)
	c := &http.Client{Timeout: 20 * time.Second, Transport: nsTransport(ns, nil)}
	waitReady(t, p, c, "http://"+exporterAddr, "", "")
	c.CloseIdleConnections()
	return ctx, ns, p, c
}

// TestHTTPIdleConnectionsBounded is the probe's 3000 idle keep-alive
// clients with the default flags: the exporter holds at most
// --web.max-connections (64) of them, so its descriptors and goroutines
// stay flat, every client is still answered, and a scrape gets through.
func TestHTTPIdleConnectionsBounded(t *testing.T) {
	ctx, ns, p, c := httpExporter(t, nil)
	pid := p.Cmd.Process.Pid
	baseFDs := openFDs(t, pid)
	baseG := metricValue(t, c, "go_goroutines")

	const clients = 3000
	_, answered := idleClients(t, ctx, ns, clients)
	time.Sleep(time.Second)
	fds := openFDs(t, pid)
	g := metricValue(t, c, "go_goroutines")
	t.Logf("%d idle keep-alive clients (%d answered): exporter fds %d -> %d, goroutines %v -> %v",
		clients, answered, baseFDs, fds, baseG, g)
	if answered != clients {
		t.Errorf("%d of %d clients got their answer, want all", answered, clients)
	}
	// 64 connections, one more waiting in Accept, and slack for the
	// sampler's own descriptors.
	if fds > baseFDs+64+10 {
		t.Errorf("exporter holds %d fds with %d idle clients (%d before): not bounded by --web.max-connections=64", fds, clients, baseFDs)
	}
	if g > baseG+2*64+20 {
		t.Errorf("exporter runs %v goroutines with %d idle clients (%v before)", g, clients, baseG)
	}
	if p.Exited() {
		t.Fatalf("exporter exited: %v", p.Err())
	}
	if ev := metricValue(t, c, "tcpstate_http_connections_evicted_total"); ev < clients-64-1 {
		t.Errorf("tcpstate_http_connections_evicted_total = %v, want at least %d", ev, clients-64-1)
	}
}

// TestHTTPIdleTimeout holds 300 idle keep-alive connections (under
// --web.max-connections) and checks that the server closes every one of
// them after --web.idle-timeout, returning to its descriptor count.
func TestHTTPIdleTimeout(t *testing.T) {
	ctx, ns, p, _ := httpExporter(t, nil, "--web.idle-timeout=2s", "--web.max-connections=1000")
	pid := p.Cmd.Process.Pid
	baseFDs := openFDs(t, pid)

	const clients = 300
	conns, answered := idleClients(t, ctx, ns, clients)
	held := openFDs(t, pid)
	start := time.Now()
	closed := closedByServer(conns, 15*time.Second)
	after := openFDs(t, pid)
	t.Logf("%d idle clients (%d answered): fds %d before, %d held, %d after the idle timeout; %d closed by the server within %v",
		clients, answered, baseFDs, held, after, closed, time.Since(start).Round(time.Millisecond))
	if held < baseFDs+clients/2 {
		t.Errorf("only %d fds while %d clients were connected (%d before): the clients did not stay connected", held, clients, baseFDs)
	}
	if closed != clients {
		t.Errorf("the server closed %d of %d idle connections within 15s of a 2s idle timeout", closed, clients)
	}
	// Slack: the sampler holds its namespace's four net files from its
	// second cheap sample on, which may come after baseFDs was counted.
	if after > baseFDs+3+4 {
		t.Errorf("exporter holds %d fds after the idle timeout, %d before the clients", after, baseFDs)
	}
}

// TestHTTPReachableUnderFDLimit is the probe's descriptor-limit run: the
// exporter under RLIMIT_NOFILE 64 (prlimit), with the default flags, and
// 80 idle keep-alive clients. A scrape still gets through, and the
// sampler's own reads still work.
func TestHTTPReachableUnderFDLimit(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed: " + err.Error())
	}
	ctx, ns, p, c := httpExporter(t, []string{prlimit, "--nofile=64:64"})
	pid := p.Cmd.Process.Pid
	t.Logf("exporter pid %d: %d fds when ready", pid, openFDs(t, pid))
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil || !regexp.MustCompile(`Max open files\s+64\s+64`).Match(limits) {
		t.Fatalf("the exporter does not run under RLIMIT_NOFILE 64 (%v):\n%s", err, limits)
	}
	c.CloseIdleConnections()

	const clients = 80
	_, answered := idleClients(t, ctx, ns, clients)
	// Let the sampler run a few dumps and kernel reads meanwhile.
	time.Sleep(3 * time.Second)
	fds := openFDs(t, pid)
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: nsTransport(ns, nil)}
	start := time.Now()
	code, body, err := get(fresh, "http://"+exporterAddr+"/metrics", "", "")
	took := time.Since(start)
	t.Logf("RLIMIT_NOFILE 64, %d idle clients (%d answered): exporter fds %d; scrape: status %d in %v", clients, answered, fds, code, took.Round(time.Millisecond))
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape under RLIMIT_NOFILE 64 with %d idle clients: status %d, %v\n%s", clients, code, err, p.Logs.String())
	}
	mfs := parseMetrics(t, body)
	for _, name := range []string{"tcpstate_kernel_read_errors_total", "tcpstate_dump_errors_total"} {
		if v, _ := metricSum(mfs, name, nil); v != 0 {
			t.Errorf("%s = %v under the descriptor limit, want 0", name, v)
		}
	}
	// The limit less the descriptors open at start and a reserve.
	if v, ok := metricSum(mfs, "tcpstate_http_connections_max", nil); !ok || v < 1 || v > 64-fdReserve {
		t.Errorf("tcpstate_http_connections_max = %v (%v), want 1 to %d (64 fds less those open at start and a reserve of %d)", v, ok, 64-fdReserve, fdReserve)
	}
	if fds >= 64 {
		t.Errorf("exporter at its descriptor limit: %d fds", fds)
	}
	if strings.Contains(p.Logs.String(), "too many open files") {
		t.Errorf("exporter ran out of descriptors:\n%s", p.Logs.String())
	}
}

// slowRequest sends head on a new connection inside ns, then one byte of
// body every interval, and reports when the server answered (status line
// read, zero if never) and when it closed the connection.
func slowRequest(ctx context.Context, ns *fixture.Netns, head string, interval time.Duration, limit time.Duration) (answered, closed time.Duration, status string, err error) {
	c, err := ns.DialContext(ctx, "tcp", exporterAddr)
	if err != nil {
		return 0, 0, "", err
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, head); err != nil {
		return 0, 0, "", err
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	_ = c.SetReadDeadline(start.Add(limit))
	br := bufio.NewReader(c)
	line, rerr := br.ReadString('\n')
	if rerr == nil {
		answered = time.Since(start)
		status = strings.TrimSpace(line)
	}
	for rerr == nil {
		_, rerr = br.ReadByte()
	}
	if ne, ok := errors.AsType[net.Error](rerr); ok && ne.Timeout() {
		return answered, 0, status, nil
	}
	return answered, time.Since(start), status, nil
}

// TestHTTPSlowClientsCut sends requests whose bodies (or headers) trickle
// in a byte every 200 ms: a body is never waited for (the request is
// answered and the connection closed at once), and headers are cut at
// --web.read-timeout.
func TestHTTPSlowClientsCut(t *testing.T) {
	const readTimeout = 2 * time.Second
	ctx, ns, _, _ := httpExporter(t, nil, "--web.read-timeout="+readTimeout.String())

	const limit = 15 * time.Second
	for _, tc := range []struct {
		name, head, status string
	}{
		{"POST body", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", "405"},
		{"GET body", "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", "200"},
		{"chunked body", "PUT /alerts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "405"},
		{"headers", "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ", ""},
	} {
		answered, closed, status, err := slowRequest(ctx, ns, tc.head, 200*time.Millisecond, limit)
		t.Logf("%s: answered after %v (%q), closed after %v", tc.name, answered.Round(time.Millisecond), status, closed.Round(time.Millisecond))
		switch {
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case closed == 0:
			t.Errorf("%s: connection still open after %v with --web.read-timeout=%v", tc.name, limit, readTimeout)
		case closed > readTimeout+3*time.Second:
			t.Errorf("%s: closed after %v, want by the %v read timeout", tc.name, closed, readTimeout)
		case tc.status != "" && !strings.Contains(status, " "+tc.status+" "):
			t.Errorf("%s: status line %q, want %s", tc.name, status, tc.status)
		}
	}
}

// TestHTTPShutdownUnderSlowClients sends SIGTERM while slow-body and
// slow-header clients are connected: the exporter exits 0 within the
// shutdown bound (2s) instead of waiting for them.
func TestHTTPShutdownUnderSlowClients(t *testing.T) {
	ctx, ns, p, _ := httpExporter(t, nil)

	var wg sync.WaitGroup
	for i := range 40 {
		head := "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
		if i%2 == 1 {
			head = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "
		}
		wg.Go(func() { _, _, _, _ = slowRequest(ctx, ns, head, 100*time.Millisecond, 20*time.Second) })
	}
	time.Sleep(time.Second)
	start := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("exporter still running 15s after SIGTERM")
	}
	took := time.Since(start)
	t.Logf("SIGTERM with 20 slow-body and 20 slow-header clients: exited after %v (%v)", took.Round(time.Millisecond), p.Err())
	if p.Err() != nil {
		t.Errorf("exit: %v, want 0", p.Err())
	}
	if took > shutdownGrace+time.Second {
		t.Errorf("exit took %v after SIGTERM, want within the %v bound", took, shutdownGrace)
	}
	wg.Wait()
}

// TestHTTPMethodsAndErrorBodies sends every method but GET and HEAD to
// every endpoint (405 with Allow: GET, HEAD), and a 1 MB state to /alerts
// (400 with a fixed message).
func TestHTTPMethodsAndErrorBodies(t *testing.T) {
	_, _, _, c := httpExporter(t, nil)
	base := "http://" + exporterAddr

	for _, path := range []string{"/metrics", "/alerts", "/-/healthy", "/-/ready", "/", "/no-such-page"} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodTrace, http.MethodPatch, http.MethodOptions, "PROPFIND"} {
			req, err := http.NewRequest(m, base+path, strings.NewReader("tsh6-request-body"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("%s %s: %v", m, path, err)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: status %d, Allow %q; want 405 and GET, HEAD", m, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
			if strings.Contains(string(body), m) || strings.Contains(string(body), "tsh6-request-body") {
				t.Errorf("%s %s: the error body %q repeats the request", m, path, body)
			}
		}
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(m, base+path, nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Errorf("%s %s: %v", m, path, err)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusMethodNotAllowed {
				t.Errorf("%s %s: 405", m, path)
			}
		}
	}

	big := strings.Repeat("A", 1<<20-4096)
	code, body, err := get(c, base+"/alerts?state="+big, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"status":"error","errorType":"bad_data","error":"state must be pending or firing"}`; code != http.StatusBadRequest || string(body) != want {
		t.Errorf("/alerts with a 1 MB state: status %d, %d-byte body %.100q; want 400 %s", code, len(body), body, want)
	}
}

// writeWebConfig writes a web config with TLS (when pki is not nil) and
// basic-auth users (name, password pairs).
func writeWebConfig(t *testing.T, path string, pki *testPKI, users ...string) {
	t.Helper()
	var yml string
	if pki != nil {
		yml = fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n", pki.certFile, pki.keyFile)
	}
	yml += "basic_auth_users:\n"
	for i := 0; i+1 < len(users); i += 2 {
		hash, err := bcrypt.GenerateFromPassword([]byte(users[i+1]), bcrypt.DefaultCost)
		if err != nil {
			t.Fatal(err)
		}
		yml += fmt.Sprintf("  %s: '%s'\n", users[i], hash)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits up to 10 s for a log line matching re.
func waitLog(t *testing.T, p *fixture.Proc, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range strings.Split(p.Logs.String(), "\n") {
			if re.MatchString(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %s:\n%s", re, p.Logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHTTPServerErrorsAndSIGHUP runs the exporter with TLS and basic auth:
// a handshake that is not TLS produces one structured (logfmt) warning
// line, not a bare log line; SIGHUP leaves it running, says the web config
// is valid, and a password changed in the file applies.
func TestHTTPServerErrorsAndSIGHUP(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, hardenNetnsPrefix)
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	const user = "tsh6-prometheus"
	pass := randomSecret(t, 16)
	webConfig := filepath.Join(dir, "web.yml")
	writeWebConfig(t, webConfig, &pki, user, pass)

	p := startExporter(t, ctx, ns, bin, nil, "--web.listen-address="+exporterAddr, "--web.config.file="+webConfig)
	c := &http.Client{Timeout: 10 * time.Second, Transport: nsTransport(ns, &tls.Config{RootCAs: pki.caPool, MinVersion: tls.VersionTLS12})}
	base := "https://" + exporterAddr
	waitReady(t, p, c, base, user, pass)

	conn, err := ns.DialContext(ctx, "tcp", exporterAddr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "\x01\x02garbage, not a TLS record\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, conn)
	conn.Close()
	line := waitLog(t, p, regexp.MustCompile(`TLS handshake error`))
	t.Logf("bad handshake logged as: %s", line)
	if !regexp.MustCompile(`^time=\S+ level=WARN source=\S+ msg="http: TLS handshake error from 127\.0\.0\.1:\d+: .*" component=http$`).MatchString(line) {
		t.Errorf("TLS handshake error not logged through slog (logfmt, level, component): %q", line)
	}

	// SIGHUP: still running, one line about the web config.
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, regexp.MustCompile(`level=INFO .*msg="SIGHUP: web config is valid`))
	if p.Exited() {
		t.Fatalf("exporter exited on SIGHUP: %v", p.Err())
	}
	// A new password in the file applies (exporter-toolkit rereads it).
	newPass := randomSecret(t, 16)
	writeWebConfig(t, webConfig, &pki, user, newPass)
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pass string
		want int
	}{{newPass, http.StatusOK}, {pass, http.StatusUnauthorized}} {
		code, _, err := get(c, base+"/-/healthy", user, tc.pass)
		if err != nil || code != tc.want {
			t.Errorf("after the password change: status %d, %v; want %d", code, err, tc.want)
		}
	}
	// An invalid file is reported on SIGHUP, and the process stays.
	if err := os.WriteFile(webConfig, []byte("basic_auth_users: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, regexp.MustCompile(`level=ERROR .*msg="SIGHUP: web config is invalid`))
	time.Sleep(200 * time.Millisecond)
	if p.Exited() {
		t.Fatalf("exporter exited on SIGHUP: %v", p.Err())
	}
}

// dialFrom returns a DialContext that connects from inside ns with local
// address ip.
func dialFrom(ns *fixture.Netns, ip string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			d := &net.Dialer{KeepAlive: -1, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// TestHTTPBasicAuthFlood floods the exporter with wrong passwords (each
// distinct, so exporter-toolkit's cache never answers) from 32 clients
// while a scraper with the right password scrapes /metrics, and a second
// user, never seen before, authenticates from another address midway:
// every valid scrape completes within a generous bound, and excess checks
// are answered 429 and counted in tcpstate_http_auth_throttled_total.
func TestHTTPBasicAuthFlood(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, hardenNetnsPrefix)
	dir := t.TempDir()
	const user, second = "tsh6-prometheus", "tsh6-second"
	pass, secondPass := randomSecret(t, 16), randomSecret(t, 16)
	webConfig := filepath.Join(dir, "web.yml")
	writeWebConfig(t, webConfig, nil, user, pass, second, secondPass)
	p := startExporter(t, ctx, ns, bin, nil, "--web.listen-address="+exporterAddr, "--web.config.file="+webConfig)
	base := "http://" + exporterAddr
	scraper := &http.Client{Timeout: 30 * time.Second, Transport: nsTransport(ns, nil)}
	waitReady(t, p, scraper, base, user, pass)

	floodCtx, stopFlood := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var codes sync.Map // status -> *atomic.Int64
	count := func(code int) {
		v, _ := codes.LoadOrStore(code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	for i := range 32 {
		wg.Go(func() {
			fc := &http.Client{Timeout: 30 * time.Second, Transport: nsTransport(ns, nil)}
			for n := 0; floodCtx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(floodCtx, http.MethodGet, base+"/metrics", nil)
				req.SetBasicAuth(user, fmt.Sprintf("wrong-%d-%d", i, n))
				resp, err := fc.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				count(resp.StatusCode)
			}
		})
	}
	time.Sleep(2 * time.Second)

	// A user never seen before, from another address, during the flood.
	other := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dialFrom(ns, "127.0.0.2")}}
	start := time.Now()
	code, _, err := get(other, base+"/metrics", second, secondPass)
	firstLogin := time.Since(start)
	if err != nil || code != http.StatusOK {
		t.Errorf("first scrape of a new user from 127.0.0.2 under the flood: status %d, %v after %v", code, err, firstLogin)
	}

	var lat []time.Duration
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		start := time.Now()
		code, body, err := get(scraper, base+"/metrics", user, pass)
		lat = append(lat, time.Since(start))
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), "tcpstate_sockets") {
			t.Errorf("valid scrape under the flood: status %d, %v", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopFlood()
	wg.Wait()
	slices.Sort(lat)
	got := map[int]int64{}
	codes.Range(func(k, v any) bool { got[k.(int)] = v.(*atomic.Int64).Load(); return true })
	code, body, err := get(scraper, base+"/metrics", user, pass)
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape after the flood: status %d, %v", code, err)
	}
	throttled, _ := metricSum(parseMetrics(t, body), "tcpstate_http_auth_throttled_total", nil)
	t.Logf("flood of wrong passwords from 32 clients: answers %v, tcpstate_http_auth_throttled_total %v; new user's first scrape %v; %d valid scrapes: median %v, max %v",
		got, throttled, firstLogin.Round(time.Millisecond), len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	if got[http.StatusTooManyRequests] == 0 {
		t.Errorf("no wrong-password request was answered 429: authentication work is not bounded")
	}
	if got[http.StatusUnauthorized] == 0 {
		t.Errorf("no wrong-password request was answered 401")
	}
	if throttled == 0 || throttled < float64(got[http.StatusTooManyRequests]) {
		t.Errorf("tcpstate_http_auth_throttled_total = %v, clients saw %d answers 429", throttled, got[http.StatusTooManyRequests])
	}
	// Generous: a check is one or two bcrypt comparisons behind the
	// exporter-toolkit lock, on a loaded machine.
	if slowest := lat[len(lat)-1]; slowest > 5*time.Second {
		t.Errorf("slowest valid scrape under the flood took %v, want under 5s", slowest)
	}
	if firstLogin > 5*time.Second {
		t.Errorf("a new user's first scrape under the flood took %v, want under 5s", firstLogin)
	}
}

// TestNetnsAllUnderFDLimit: --netns=all under RLIMIT_NOFILE 200 on a node
// with more namespaces than fit. The namespaces are found after the HTTP
// server was given its connections (64 at this limit), and must not take
// their descriptors: the agent samples the namespaces that fit, counts the
// others in tcpstate_netns_unsampled{reason="fd_limit"} and logs it once,
// and a scrape still gets through while idle clients hold every HTTP
// connection. Discoveries every second and a half-open sweep every 2 s
// let the sampled namespaces open all their sockets while later
// discoveries run: those count at what they were promised, not at what
// they held when a discovery looked.
func TestNetnsAllUnderFDLimit(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed: " + err.Error())
	}
	// 30 namespaces of the test's own, beside whatever else the node
	// holds: at netns.NamespaceFDs each, far more than the about 100
	// descriptors left under 200 beside 64 HTTP connections.
	for range 30 {
		fixture.NewNetnsPrefix(t, "tfdl-")
	}
	ctx, ns, p, _ := httpExporter(t, []string{prlimit, "--nofile=200:200"}, "--netns=all", "--netns.refresh=1s", "--halfopen.interval=2s")
	pid := p.Cmd.Process.Pid

	const clients = 80
	_, answered := idleClients(t, ctx, ns, clients)
	// Several discoveries, dumps and sweeps; the most descriptors seen.
	fds := 0
	for range 16 {
		time.Sleep(500 * time.Millisecond)
		fds = max(fds, openFDs(t, pid))
	}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: nsTransport(ns, nil)}
	code, body, err := get(fresh, "http://"+exporterAddr+"/metrics", "", "")
	t.Logf("RLIMIT_NOFILE 200, %d idle clients (%d answered): exporter fds at most %d over 8 s; scrape: status %d", clients, answered, fds, code)
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape under RLIMIT_NOFILE 200 with --netns=all and %d idle clients: status %d, %v\n%s", clients, code, err, p.Logs.String())
	}
	mfs := parseMetrics(t, body)
	sampled, _ := metricSum(mfs, "tcpstate_netns_namespaces", nil)
	limited, ok := metricSum(mfs, "tcpstate_netns_unsampled", map[string]string{"reason": "fd_limit"})
	failing, _ := metricSum(mfs, "tcpstate_netns_unsampled", map[string]string{"reason": "open_error"})
	conns, _ := metricSum(mfs, "tcpstate_http_connections_max", nil)
	t.Logf("namespaces sampled %v, left for want of descriptors %v, failing %v; HTTP connections %v", sampled, limited, failing, conns)
	if !ok || limited < 1 {
		t.Errorf("tcpstate_netns_unsampled{reason=\"fd_limit\"} = %v (%v), want the namespaces that did not fit", limited, ok)
	}
	if sampled < 2 {
		t.Errorf("%v namespaces sampled: the agent's own and those that fit should be", sampled)
	}
	if failing != 0 {
		t.Errorf("%v namespaces failed to open: the descriptor limit was hit", failing)
	}
	// What the process holds stays clear of the limit by the reserve
	// kept for /proc reads and dials (8 of it: the probe's own scans and
	// the moment of a dump may take a few).
	if fds > 200-fdReserve/2 {
		t.Errorf("exporter held %d fds under a limit of 200: into the reserve of %d", fds, fdReserve)
	}
	logs := p.Logs.String()
	if n := strings.Count(logs, "not sampling some network namespaces"); n != 1 {
		t.Errorf("%d log lines about namespaces left for want of descriptors, want 1:\n%s", n, logs)
	}
	if strings.Contains(logs, "too many open files") {
		t.Errorf("exporter ran out of descriptors:\n%s", logs)
	}
}
