//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// TestSnapshotHalfOpen runs the snapshot over a namespace holding 12 idle
// loopback connections without keepalive (this process holds both ends):
// the half-open section lists the server side under the listener's port
// and this process, the client side as "ephemeral", and the real detectors
// report TCPHalfOpenSuspect for the listener.
func TestSnapshotHalfOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, "tsal-")
	set, err := ns.Established(ctx, fixture.IPv4, 12)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	port := strconv.Itoa(int(set.Listeners()[0].Port()))
	cfg := detect.DefaultConfig()
	cfg.HalfOpenMinIdle = time.Second
	cfg.HalfOpenMinCount = 10
	time.Sleep(1500 * time.Millisecond)

	var stdout, stderr bytes.Buffer
	code := snapshotMain(ctx, snapshotOptions{Dial: dialInto(t, ns), Wait: 200 * time.Millisecond, Detect: cfg, Findings: findingsFor, HalfOpen: true}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("snapshot output:\n%s", out)
	if code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(out, "Half-open suspects (ESTABLISHED, no timer armed, nothing received for over 1s): 24 of 24 ESTABLISHED sockets without a timer\n") {
		t.Errorf("half-open header missing or wrong")
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	row := rowFields(out, port)
	want := []string{port, strings.TrimSpace(string(comm)), strconv.Itoa(os.Getpid()), "12"}
	if len(row) != 7 || strings.Join(row[:4], " ") != strings.Join(want, " ") || row[5] != set.Listeners()[0].String() {
		t.Errorf("listener row %v, want %v ... %v", row, want, set.Listeners()[0])
	}
	if row := rowFields(out, "ephemeral"); len(row) != 7 || row[3] != "12" || row[6] != "127.0.0.1" {
		t.Errorf("ephemeral row %v, want 12 connections to 127.0.0.1", row)
	}
	if !strings.Contains(out, `warning  TCPHalfOpenSuspect  {command="`+want[1]+`", port="`+port+`"}  value=12`) {
		t.Errorf("no TCPHalfOpenSuspect finding for port %s", port)
	}
}
