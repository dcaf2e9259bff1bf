//go:build linux

package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// TestReadyReflectsScrapeErrors checks that /-/ready answers 503 with the
// reason while the latest collection of a part left series out, that
// tcpstate_scrape_errors_total counts them, and that readiness returns
// once a collection of the part builds every series.
func TestReadyReflectsScrapeErrors(t *testing.T) {
	a := testAgent(t)
	if _, err := a.hostSampler.Sample(collector.Full); err != nil {
		t.Fatal(err)
	}
	h := a.handler()
	ready := func() (int, string) {
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/-/ready", nil))
		return rr.Code, rr.Body.String()
	}
	if code, body := ready(); code != http.StatusOK {
		t.Fatalf("/-/ready after a full sample: %d %s", code, body)
	}
	a.scrapeErrs.Record(collector.PartAlerts, []error{errors.New("label value \"\\xff\" is not valid UTF-8"), errors.New("second")})
	code, body := ready()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "alerts: label value") || !strings.Contains(body, "tcpstate_scrape_errors_total") {
		t.Errorf("/-/ready while a part fails: %d %q, want 503 naming the part and the error", code, body)
	}
	metrics := httpGet(t, h, "/metrics")
	if !strings.Contains(metrics, "tcpstate_scrape_errors_total{part=\"alerts\"} 2\n") || !strings.Contains(metrics, "tcpstate_scrape_errors_total{part=\"closewait\"} 0\n") {
		t.Errorf("/metrics lacks tcpstate_scrape_errors_total{part=\"alerts\"} 2 or a zero closewait series")
	}
	// The scrape above collected the alerts part again, without errors.
	if code, body := ready(); code != http.StatusOK {
		t.Errorf("/-/ready after a clean scrape: %d %q", code, body)
	}
}
