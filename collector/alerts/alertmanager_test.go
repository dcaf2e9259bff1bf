package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// alertmanagerBinary finds Alertmanager: upstream names it alertmanager,
// Debian's package prometheus-alertmanager.
func alertmanagerBinary() string {
	for _, name := range []string{"alertmanager", "prometheus-alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// webhookMessage is the part of Alertmanager's webhook payload we check.
type webhookMessage struct {
	Status string `json:"status"`
	Alerts []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	} `json:"alerts"`
}

type webhook struct {
	mu   sync.Mutex
	msgs []webhookMessage
}

func (w *webhook) find(status, alertname string) (webhookMessage, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		for _, a := range m.Alerts {
			if a.Status == status && a.Labels["alertname"] == alertname {
				return m, true
			}
		}
	}
	return webhookMessage{}, false
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startAlertmanager runs a real Alertmanager on loopback, routing every
// alert to a webhook at once, and returns its base URL.
func startAlertmanager(t *testing.T, hookURL string) string {
	bin := alertmanagerBinary()
	if bin == "" {
		t.Skip("no alertmanager binary in PATH (install Debian's prometheus-alertmanager)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: hook
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs:
      - url: %q
        send_resolved: true
`, hookURL)
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	logs := &fixture.LogBuffer{}
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
		"--log.level=debug",
	)
	cmd.Stdout = logs
	cmd.Stderr = logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("alertmanager exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready at %s after 20s: %v\n%s", base, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// amAlert is the part of Alertmanager's GET /api/v2/alerts answer we check.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func amAlerts(t *testing.T, base string) []amAlert {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts")
	if err != nil {
		t.Fatalf("GET /api/v2/alerts: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v2/alerts: %s: %s", resp.Status, body)
	}
	var out []amAlert
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("GET /api/v2/alerts: %v: %s", err, body)
	}
	return out
}

// eventually polls cond every 100 ms for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 20s waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRealAlertmanagerReceivesAndResolves(t *testing.T) {
	hook := &webhook{}
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m webhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("webhook payload: %v", err)
		}
		hook.mu.Lock()
		hook.msgs = append(hook.msgs, m)
		hook.mu.Unlock()
	}))
	defer hookSrv.Close()
	base := startAlertmanager(t, hookSrv.URL+"/hook")

	n, err := NewNotifier(NotifierOptions{URLs: []string{base}, ExternalLabels: map[string]string{"instance": "tsal-node"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fixture.Background(t, "Notifier.Run", n.Run).Stop(fixture.DefaultStopGrace)

	e := NewEngine(EngineOptions{Sender: n, EvalInterval: time.Second, GeneratorURL: "http://tsal-node:9874/alerts"})
	target := Target{Key: "7", Labels: map[string]string{"netns": "7", "namespace": "shop", "pod": "web-0"}}
	finding := detect.Finding{
		Alert:       "TCPSynFlood",
		Severity:    detect.Critical,
		Labels:      map[string]string{"family": "ipv4", "address": "0.0.0.0", "port": "443"},
		Summary:     "SYN flood on 0.0.0.0:443",
		Description: "1025 half-open connections, backlog 1024",
		Evidence:    map[string]string{"syn_recv": "1025", "distinct_sources": "4012"},
		Value:       1025,
	}
	firedAt := time.Now()
	e.Update(firedAt, target, []detect.Finding{finding})
	if a := only(t, e); a.State != StateFiring {
		t.Fatalf("alert state %v, want firing", a.State)
	}

	var got amAlert
	eventually(t, "Alertmanager to list the alert", func() bool {
		for _, a := range amAlerts(t, base) {
			if a.Labels["alertname"] == "TCPSynFlood" {
				got = a
				return true
			}
		}
		return false
	})
	wantLabels := map[string]string{"alertname": "TCPSynFlood", "severity": "critical", "family": "ipv4", "address": "0.0.0.0",
		"port": "443", "netns": "7", "namespace": "shop", "pod": "web-0", "instance": "tsal-node"}
	for k, v := range wantLabels {
		if got.Labels[k] != v {
			t.Errorf("Alertmanager label %s=%q, want %q (all: %v)", k, got.Labels[k], v, got.Labels)
		}
	}
	if got.Annotations["summary"] != finding.Summary || got.Annotations["syn_recv"] != "1025" ||
		got.Annotations["runbook_url"] != DefaultRunbookBase+"TCPSynFlood.md" {
		t.Errorf("Alertmanager annotations %v", got.Annotations)
	}
	if got.Status.State != "active" || !got.EndsAt.After(time.Now().Add(3*time.Minute)) {
		t.Errorf("Alertmanager state %q endsAt %v: want active, ending about 4m after %v", got.Status.State, got.EndsAt, firedAt)
	}
	t.Logf("Alertmanager lists %v state=%s startsAt=%s endsAt=%s", got.Labels, got.Status.State, got.StartsAt.Format(time.RFC3339Nano), got.EndsAt.Format(time.RFC3339Nano))
	eventually(t, "the firing webhook", func() bool { _, ok := hook.find("firing", "TCPSynFlood"); return ok })
	t.Log("webhook received status=firing")

	// The finding goes away: the engine resolves the alert and pushes it
	// with endsAt = resolution time; Alertmanager drops it from its active
	// list and notifies the receiver of the resolution.
	time.Sleep(50 * time.Millisecond)
	resolvedAt := time.Now()
	e.Update(resolvedAt, target, nil)
	eventually(t, "Alertmanager to stop listing the alert", func() bool {
		for _, a := range amAlerts(t, base) {
			if a.Labels["alertname"] == "TCPSynFlood" {
				return false
			}
		}
		return true
	})
	eventually(t, "the resolved webhook", func() bool { _, ok := hook.find("resolved", "TCPSynFlood"); return ok })
	m, _ := hook.find("resolved", "TCPSynFlood")
	for _, a := range m.Alerts {
		if a.Labels["alertname"] != "TCPSynFlood" {
			continue
		}
		if d := a.EndsAt.Sub(resolvedAt); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("resolved webhook endsAt %v, want %v", a.EndsAt, resolvedAt)
		}
		t.Logf("webhook received status=%s endsAt=%s (resolved at %s)", a.Status, a.EndsAt.Format(time.RFC3339Nano), resolvedAt.UTC().Format(time.RFC3339Nano))
		if a.Labels["instance"] != "tsal-node" || a.Annotations["description"] != finding.Description {
			t.Errorf("resolved webhook alert %+v", a)
		}
	}
	if v := testutil.ToFloat64(n.errs.WithLabelValues(base)); v != 0 {
		t.Errorf("notification errors: %v", v)
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues(base)); v != 2 {
		t.Errorf("notifications sent: %v, want 2 (firing, resolved)", v)
	}
}
