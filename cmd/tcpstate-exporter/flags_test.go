package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestBadFlagsExitTwo checks that every bad flag gives exit code 2 and one
// line that names the flag.
func TestBadFlagsExitTwo(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--sample.cpu-budget=0"}, "--sample.cpu-budget"},
		{[]string{"--sample.cpu-budget=1.5"}, "--sample.cpu-budget"},
		{[]string{"--sample.interval=1ms"}, "--sample.interval"},
		{[]string{"--sample.window=10ms", "--sample.interval=1s"}, "--sample.window"},
		{[]string{"--netns=sideways"}, "--netns"},
		{[]string{"--collector.listeners.max=0"}, "--collector.listeners.max"},
		{[]string{"--collector.destinations.max=0"}, "--collector.destinations.max"},
		{[]string{"--web.telemetry-path=metrics"}, "--web.telemetry-path"},
		{[]string{"--diag.method=fast"}, "--diag.method"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--sample.interval=abc"}, "--sample.interval"},
		{[]string{"--kubeconfig=/nonexistent/kubeconfig"}, "--kubeconfig"},
		{[]string{"--path.procfs=/nonexistent"}, "--path.procfs"},
		{[]string{"--netns.refresh=10ms"}, "--netns.refresh"},
		{[]string{"--collector.namespaces.max=0"}, "--collector.namespaces.max"},
		{[]string{"--collector.events.max-series=0"}, "--collector.events.max-series"},
		{[]string{"--collector.events.max-lifetime-series=0"}, "--collector.events.max-lifetime-series"},
		{[]string{"--alertmanager.url=ftp://am:9093"}, "--alertmanager.url"},
		{[]string{"--detect.ports.ratio=2"}, "--detect.ports.ratio"},
		{[]string{"--web.config.file=/nonexistent/web.yml"}, "--web.config.file"},
		{[]string{"--sample.cpu-budget", "lots"}, "--sample.cpu-budget"},
		{[]string{"--web.max-connections=0"}, "--web.max-connections"},
		{[]string{"--web.read-timeout=0s"}, "--web.read-timeout"},
		{[]string{"--web.write-timeout=-1s"}, "--web.write-timeout"},
		{[]string{"--web.idle-timeout=0s"}, "--web.idle-timeout"},
		{[]string{"--web.idle-timeout=soon"}, "--web.idle-timeout"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		msg := stderr.String()
		if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: stderr %q: want one line naming %s", tc.args, msg, tc.want)
		}
	}
}

// TestCollectorLimitFlags checks the defaults and the effect of the
// collector's series limits.
func TestCollectorLimitFlags(t *testing.T) {
	cfg, _, err := parseFlags(nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listenersMax != 1000 || cfg.destsMax != 50 || cfg.netnsMax != 500 {
		t.Errorf("defaults: --collector.listeners.max %d, --collector.destinations.max %d, --collector.namespaces.max %d; want 1000, 50, 500",
			cfg.listenersMax, cfg.destsMax, cfg.netnsMax)
	}
	cfg, _, err = parseFlags([]string{"--collector.listeners.max=9", "--collector.destinations.max=7", "--collector.namespaces.max=5"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listenersMax != 9 || cfg.destsMax != 7 || cfg.netnsMax != 5 {
		t.Errorf("flags not applied: listeners %d, destinations %d, namespaces %d", cfg.listenersMax, cfg.destsMax, cfg.netnsMax)
	}
}
