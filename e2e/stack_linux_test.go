//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// Ports on the test namespace's loopback. The namespace is new, so they are
// free whatever runs on the host (Debian's own Prometheus and Alertmanager
// services included).
const (
	exporterAddr     = "127.0.0.1:9874"
	prometheusAddr   = "127.0.0.1:9090"
	alertmanagerAddr = "127.0.0.1:9093"
)

// helperEnv names the helper a re-executed test binary runs instead of the
// tests.
const helperEnv = "TSE5_HELPER"

// leakyServerName is the leaking server's file name, hence its command name
// (/proc/PID/comm) and the command label of its CLOSE_WAIT sockets.
const leakyServerName = "leaky-server"

func TestMain(m *testing.M) {
	switch h := os.Getenv(helperEnv); h {
	case "":
		os.Exit(m.Run())
	case leakyServerName:
		os.Exit(runLeakyServer(os.Stdout, os.Stdin))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, h)
		os.Exit(2)
	}
}

// runLeakyServer is the helper process: it listens on a loopback port,
// prints "listening PORT", accepts every connection, prints "accepted N",
// and never reads from or closes any of them, so each connection its peer
// closes stays in CLOSE_WAIT. It exits when its standard input reaches end
// of file (the test ended or died) or after ten minutes at most.
func runLeakyServer(out io.Writer, in io.Reader) int {
	lc := net.ListenConfig{KeepAlive: -1}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "leaky server: listen: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "listening %d\n", l.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, in)
		os.Exit(0)
	}()
	go func() {
		time.Sleep(10 * time.Minute)
		fmt.Fprintln(os.Stderr, "leaky server: ten minutes are up")
		os.Exit(3)
	}()
	var held []net.Conn
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "leaky server: accept: %v\n", err)
			return 1
		}
		held = append(held, c)
		fmt.Fprintf(out, "accepted %d\n", len(held))
	}
}

// startInNetns starts bin inside ns (through `ip netns exec`, which execs
// bin, so the process is bin itself) under fixture.StartProc: its cleanup
// stops it with SIGTERM, kills it after ten seconds, and prints the tail of
// its output when the test failed. stdout, when not nil, receives the
// process's standard output instead of the log buffer.
func startInNetns(t *testing.T, ns *fixture.Netns, name, bin string, stdout io.Writer, env []string, args ...string) *fixture.Proc {
	t.Helper()
	cmd := ns.Command(context.Background(), bin, args...)
	cmd.Stdout = stdout
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	return fixture.StartProc(t, name, cmd, fixture.ProcOptions{LogTail: 6000})
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// nsClient returns an HTTP client whose connections are made inside ns, so
// it reaches the servers on the namespace's loopback.
func nsClient(ns *fixture.Netns) *http.Client {
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{DialContext: ns.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second},
	}
}

// waitReady polls url until it answers 200, the process exits, or the
// timeout passes.
func waitReady(t *testing.T, c *http.Client, p *fixture.Proc, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if p.Exited() {
			t.Fatalf("%s exited before it was ready: %v\n%s", p.Name, p.Err(), tail(p.Logs.String(), 6000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s after %v (last: %s)\n%s", p.Name, url, timeout, last, tail(p.Logs.String(), 6000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lookBinary returns the first of names found in PATH, or skips the test.
func lookBinary(t *testing.T, what string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Skipf("%s not installed (none of %s in PATH; scripts/test-all.sh installs the Debian package)", what, strings.Join(names, ", "))
	return ""
}

// buildExporter compiles cmd/tcpstate-exporter into dir.
func buildExporter(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tcpstate-exporter")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/tcpstate/tcpstate-exporter/cmd/tcpstate-exporter").CombinedOutput()
	if err != nil {
		t.Fatalf("go build of the exporter: %v\n%s", err, out)
	}
	return bin
}

// webhookAlert is the part of an Alertmanager webhook alert the test reads.
type webhookAlert struct {
	Status string            `json:"status"`
	Labels map[string]string `json:"labels"`
}

// webhook records the alerts Alertmanager notifies.
type webhook struct {
	mu     sync.Mutex
	alerts []webhookAlert
	bad    []string
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var msg struct {
		Alerts []webhookAlert `json:"alerts"`
	}
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.bad = append(w.bad, err.Error())
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	w.alerts = append(w.alerts, msg.Alerts...)
}

// snapshot returns the alerts received so far and the payload errors.
func (w *webhook) snapshot() ([]webhookAlert, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]webhookAlert(nil), w.alerts...), append([]string(nil), w.bad...)
}

// startWebhook serves a webhook receiver from the test process on a
// listener made inside ns, and returns its URL as seen from ns.
func startWebhook(t *testing.T, ns *fixture.Netns) (*webhook, string) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("webhook listener in %s: %v", ns, err)
	}
	w := &webhook{}
	srv := &http.Server{Handler: w, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return w, "http://" + l.Addr().String() + "/hook"
}

// startAlertmanager runs Alertmanager in ns with one route that sends every
// alert to hookURL at once, clustering off, state in a temporary directory.
func startAlertmanager(t *testing.T, ns *fixture.Netns, c *http.Client, bin, dir, hookURL string) *fixture.Proc {
	t.Helper()
	cfg := fmt.Sprintf(`route:
  receiver: hook
  group_by: ['alertname', 'job', 'instance', 'port', 'command']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs:
      - url: %q
        send_resolved: true
`, hookURL)
	path := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startInNetns(t, ns, "alertmanager", bin, nil, nil,
		"--config.file="+path,
		"--storage.path="+filepath.Join(dir, "alertmanager-data"),
		"--web.listen-address="+alertmanagerAddr,
		"--cluster.listen-address=",
		"--log.level=info",
	)
	waitReady(t, c, p, "http://"+alertmanagerAddr+"/-/ready", 30*time.Second)
	return p
}

// startExporter runs the exporter in ns, pushing its alerts to the
// Alertmanager.
func startExporter(t *testing.T, ns *fixture.Netns, c *http.Client, bin string, args ...string) *fixture.Proc {
	t.Helper()
	p := startInNetns(t, ns, "tcpstate-exporter", bin, nil, nil, append([]string{
		"--web.listen-address=" + exporterAddr,
		"--alertmanager.url=http://" + alertmanagerAddr,
	}, args...)...)
	waitReady(t, c, p, "http://"+exporterAddr+"/-/ready", 30*time.Second)
	return p
}

// Names Prometheus gives the exporter's target.
const (
	scrapeJob      = "tcpstate"
	scrapeInstance = exporterAddr
)

// startPrometheus runs Prometheus in ns: it scrapes the exporter every
// second, evaluates rulesFile every second and sends alerts to the
// Alertmanager.
func startPrometheus(t *testing.T, ns *fixture.Netns, c *http.Client, bin, dir, rulesFile string) *fixture.Proc {
	t.Helper()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: %q
    static_configs:
      - targets: [%q]
`, rulesFile, alertmanagerAddr, scrapeJob, scrapeInstance)
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startInNetns(t, ns, "prometheus", bin, nil, nil,
		"--config.file="+path,
		"--storage.tsdb.path="+filepath.Join(dir, "prometheus-data"),
		"--storage.tsdb.retention.time=1h",
		"--web.listen-address="+prometheusAddr,
		"--log.level=info",
	)
	waitReady(t, c, p, "http://"+prometheusAddr+"/-/ready", 60*time.Second)
	return p
}

// leakyServer is the running helper and the port it listens on.
type leakyServer struct {
	proc  *fixture.Proc
	port  int
	lines chan string
}

// startLeakyServer re-executes the test binary, under the name
// leakyServerName, as the leaking server inside ns.
func startLeakyServer(t *testing.T, ns *fixture.Netns, dir string) *leakyServer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("finding the test binary: %v", err)
	}
	link := filepath.Join(dir, leakyServerName)
	if err := os.Symlink(self, link); err != nil {
		t.Fatalf("linking the helper: %v", err)
	}
	pr, pw := io.Pipe()
	ls := &leakyServer{lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case ls.lines <- sc.Text():
			default:
			}
		}
		close(ls.lines)
	}()
	// Registered before startInNetns, so it runs after the process has
	// stopped and ends the scanner.
	t.Cleanup(func() { pw.Close() })
	ls.proc = startWithStdin(t, ns, leakyServerName, link, pw, []string{helperEnv + "=" + leakyServerName})
	select {
	case line, ok := <-ls.lines:
		if !ok {
			t.Fatalf("leaky server ended before listening")
		}
		p, found := strings.CutPrefix(line, "listening ")
		port, err := strconv.Atoi(p)
		if !found || err != nil {
			t.Fatalf("leaky server printed %q, want \"listening PORT\"", line)
		}
		ls.port = port
	case <-time.After(15 * time.Second):
		t.Fatalf("leaky server did not listen within 15 s\n%s", ls.proc.Logs.String())
	}
	return ls
}

// startWithStdin is startInNetns with a pipe to the process's standard
// input kept open for its life; closing it tells the helper to exit, which
// is how the cleanup stops it.
func startWithStdin(t *testing.T, ns *fixture.Netns, name, bin string, stdout io.Writer, env []string) *fixture.Proc {
	t.Helper()
	cmd := ns.Command(context.Background(), bin)
	cmd.Stdout = stdout
	cmd.Env = append(os.Environ(), env...)
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	return fixture.StartProc(t, name, cmd, fixture.ProcOptions{
		Stop:    func(*exec.Cmd) error { return w.Close() },
		LogTail: 3000,
	})
}

// leak opens n connections to the leaky server from inside ns and closes
// them, then waits until the server has accepted all of them: n server
// sockets in CLOSE_WAIT owned by the helper.
func (ls *leakyServer) leak(t *testing.T, ns *fixture.Netns, n int) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", ls.port)
	err := ns.Do(func() error {
		for i := range n {
			c, err := (&net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}).Dial("tcp", addr)
			if err != nil {
				return fmt.Errorf("connection %d to %s: %w", i, addr, err)
			}
			if err := c.Close(); err != nil {
				return fmt.Errorf("closing connection %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("leaking connections: %v", err)
	}
	deadline := time.After(15 * time.Second)
	want := fmt.Sprintf("accepted %d", n)
	for {
		select {
		case line, ok := <-ls.lines:
			if !ok {
				t.Fatalf("leaky server ended before accepting %d connections", n)
			}
			if line == want {
				return
			}
		case <-deadline:
			t.Fatalf("leaky server did not accept %d connections within 15 s", n)
		}
	}
}
