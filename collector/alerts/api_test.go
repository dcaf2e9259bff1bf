package alerts

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
)

func apiEngine(t *testing.T) *Engine {
	t.Helper()
	e := NewEngine(EngineOptions{})
	local := time.FixedZone("UTC+2", 2*3600)
	start := time.Date(2025, 3, 4, 7, 6, 7, 123000000, local) // 05:06:07.123 UTC
	e.Update(start, Target{}, []detect.Finding{
		{Alert: "TCPSynFlood", Severity: detect.Critical, Labels: map[string]string{"port": "443"},
			Summary: "SYN flood", Description: "1025 half-open", Evidence: map[string]string{"syn_recv": "1025"}, Value: 15},
		{Alert: "TCPAcceptQueueFull", Severity: detect.Warning, Labels: map[string]string{"port": "8080"},
			Summary: "queue full", Value: 0.000125, For: time.Minute},
	})
	return e
}

func get(t *testing.T, h http.Handler, target string) (int, string) {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, target, nil))
	body, err := io.ReadAll(rr.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := rr.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", target, ct)
	}
	return rr.Code, string(body)
}

func TestAlertsJSONMatchesPrometheus(t *testing.T) {
	h := Handler(apiEngine(t))
	code, body := get(t, h, "/alerts")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	// Prometheus's /api/v1/alerts: labels and annotations as objects,
	// state, activeAt as RFC 3339 (UTC here), value formatted with 'e'.
	want := `{"status":"success","data":{"alerts":[` +
		`{"labels":{"alertname":"TCPAcceptQueueFull","port":"8080","severity":"warning"},` +
		`"annotations":{"runbook_url":"https://github.com/tcpstate/tcpstate-exporter/blob/v` + tcpstate.Version() + `/docs/runbooks/TCPAcceptQueueFull.md","summary":"queue full"},` +
		`"state":"pending","activeAt":"2025-03-04T05:06:07.123Z","value":"1.25e-04"},` +
		`{"labels":{"alertname":"TCPSynFlood","port":"443","severity":"critical"},` +
		`"annotations":{"description":"1025 half-open","runbook_url":"https://github.com/tcpstate/tcpstate-exporter/blob/v` + tcpstate.Version() + `/docs/runbooks/TCPSynFlood.md","summary":"SYN flood","syn_recv":"1025"},` +
		`"state":"firing","activeAt":"2025-03-04T05:06:07.123Z","value":"1.5e+01"}]}}`
	if body != want {
		t.Errorf("body:\n%s\nwant:\n%s", body, want)
	}

	code, body = get(t, h, "/alerts?state=firing")
	var resp struct {
		Status string
		Data   struct {
			Alerts []struct {
				Labels map[string]string
				State  string
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || code != http.StatusOK {
		t.Fatalf("state=firing: status %d, %v: %s", code, err, body)
	}
	if len(resp.Data.Alerts) != 1 || resp.Data.Alerts[0].State != "firing" || resp.Data.Alerts[0].Labels["alertname"] != "TCPSynFlood" {
		t.Errorf("state=firing returned %+v", resp.Data.Alerts)
	}

	code, body = get(t, h, "/alerts?state=resolved")
	if code != http.StatusBadRequest || !strings.Contains(body, `"status":"error"`) || !strings.Contains(body, `"errorType":"bad_data"`) {
		t.Errorf("state=resolved: status %d body %s", code, body)
	}

	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/alerts", nil))
	if rr.Code != http.StatusMethodNotAllowed || rr.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d Allow %q", rr.Code, rr.Header().Get("Allow"))
	}
}

func TestAlertsJSONEmpty(t *testing.T) {
	code, body := get(t, Handler(NewEngine(EngineOptions{})), "/alerts")
	if want := `{"status":"success","data":{"alerts":[]}}`; code != http.StatusOK || body != want {
		t.Errorf("status %d body %s, want %s", code, body, want)
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{15: "1.5e+01", 0: "0e+00", 1: "1e+00", 1025: "1.025e+03", -2.5: "-2.5e+00"} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestAlertsErrorDoesNotEchoInput sends a 1 MB state value and a request
// with an odd method: the 400 and 405 bodies are short fixed messages that
// repeat nothing of the request.
func TestAlertsErrorDoesNotEchoInput(t *testing.T) {
	h := Handler(apiEngine(t))
	big := strings.Repeat("<script>", 1<<20/8)
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/alerts?state="+big, nil))
	body := rr.Body.String()
	want := `{"status":"error","errorType":"bad_data","error":"state must be pending or firing"}`
	if rr.Code != http.StatusBadRequest || body != want {
		t.Errorf("state of 1 MB: status %d, %d-byte body %.200q; want 400 %s", rr.Code, len(body), body, want)
	}
	for _, m := range []string{http.MethodPost, "X-<SCRIPT>"} {
		rr := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/alerts", nil)
		req.Method = m
		h.ServeHTTP(rr, req)
		if rr.Code != http.StatusMethodNotAllowed || strings.Contains(strings.ToLower(rr.Body.String()), strings.ToLower(m)) {
			t.Errorf("%s: status %d body %q: want 405 without the method in the body", m, rr.Code, rr.Body.String())
		}
	}
}
