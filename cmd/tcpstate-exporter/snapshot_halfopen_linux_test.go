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
	code := snapshotMain(ctx, snapshotOptions{Dial: dialInto(t, ns), Wait: 200 * time.Millisecond, Detect: cfg, Findings: samplerFindings, HalfOpen: true}, &stdout, &stderr)
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
	// The owner lookup is bounded (3 s, about 850,000 descriptors): on a
	// host where other work holds more, it may stop before this process.
	// Everything else must hold either way.
	owner := strings.TrimSpace(string(comm))
	row := rowFields(out, port)
	if len(row) != 7 || row[3] != "12" || row[5] != set.Listeners()[0].String() || row[6] != "127.0.0.1" {
		t.Fatalf("listener row %v, want port %s, 12 connections, listener %v, remote 127.0.0.1", row, port, set.Listeners()[0])
	}
	switch {
	case row[1] == owner && row[2] == strconv.Itoa(os.Getpid()):
	case row[1] == "-" && row[2] == "-":
		t.Logf("owner lookup cut short by its bound on this host; %s not named", owner)
		owner = ""
	default:
		t.Errorf("listener row %v names %s %s, want %s %d", row, row[1], row[2], owner, os.Getpid())
	}
	if row := rowFields(out, "ephemeral"); len(row) != 7 || row[3] != "12" || row[6] != "127.0.0.1" {
		t.Errorf("ephemeral row %v, want 12 connections to 127.0.0.1", row)
	}
	if !strings.Contains(out, `warning  TCPHalfOpenSuspect  {command="`+owner+`", port="`+port+`"}  value=12`) {
		t.Errorf("no TCPHalfOpenSuspect finding for port %s and command %q", port, owner)
	}
}
