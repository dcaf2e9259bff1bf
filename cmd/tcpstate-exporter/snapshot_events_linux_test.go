//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/events"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// TestSnapshotEvents runs the snapshot over a namespace in which, after the
// events' first read, eventTraffic makes n refused connects, n connections
// closed by the server with SO_LINGER 0 and n connections opened and
// closed: the events section counts exactly those, by reason, destination,
// peer and listener port.
func TestSnapshotEvents(t *testing.T) {
	const n = 10
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, "tsal-")
	var cookie uint64
	if err := ns.Do(func() (err error) { cookie, err = events.NetnsCookie(); return err }); err != nil {
		t.Fatal(err)
	}
	if err := events.Check(); err != nil {
		t.Fatalf("the event programs cannot load here (run as root on a kernel with BTF): %v", err)
	}
	ev, err := openSnapshotEvents("on", cookie)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.close()
	// The first read before the traffic, as takeSnapshots takes it before
	// its first dump (it leaves a read already taken alone).
	ev.begin()
	p := eventTraffic(t, ns, n)

	var stdout, stderr bytes.Buffer
	code := snapshotMain(ctx, snapshotOptions{Dial: dialInto(t, ns), Wait: 100 * time.Millisecond, Findings: samplerFindings, Events: ev}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("snapshot output:\n%s", out)
	if code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{
		"\nConnection events over the last ",
		fmt.Sprintf("Opened: %d active, %d passive; closed: %d active, %d passive, 0 opened before the programs loaded\n", 2*n, 2*n, 2*n, 2*n),
		fmt.Sprintf("Resets sent: %d; received: %d; connect failures: %d; retransmitted segments: 0, SYN-ACKs: 0\n", 2*n, 2*n, n),
		"Retransmitted segments by peer: none\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	ps := func(p uint16) string { return strconv.Itoa(int(p)) }
	cnt := strconv.Itoa(n)
	// Resets sent by reason: the kernel's names, or one "unknown" row on a
	// kernel that passes no reason.
	noSocket, reasons := "no_socket", [][]string{{"no_socket", cnt}, {"tcp_state", cnt}}
	if !ev.src.HasResetReason() {
		noSocket, reasons = "unknown", [][]string{{"unknown", strconv.Itoa(2 * n)}}
	}
	for _, want := range append(reasons, [][]string{
		{"127.0.0.1:" + ps(p.refused), "refused", cnt}, // connect failures
		{"127.0.0.1", ps(p.refused), noSocket, cnt},    // resets sent by peer: the closed port
		{"127.0.0.2", ps(p.linger), cnt},               // resets received from the aborting server
		{"127.0.0.1", ps(p.refused), cnt},              // resets received by the refused clients
		{"127.0.0.3:" + ps(p.churn), "opened", cnt},    // active
		{"127.0.0.3:" + ps(p.churn), "closed", cnt},
		{"127.0.0.2:" + ps(p.linger), "opened", cnt},
		{ps(p.churn), "opened", cnt}, // passive
		{ps(p.churn), "closed", cnt},
		{ps(p.linger), "closed", cnt},
	}...) {
		found := false
		for _, l := range strings.Split(out, "\n") {
			if strings.Join(strings.Fields(l), " ") == strings.Join(want, " ") {
				found = true
			}
		}
		if !found {
			t.Errorf("no row %q", strings.Join(want, " "))
		}
	}
}

// TestSnapshotEventsOff checks the one line of the events section when
// events are off, and, through the binary without CAP_BPF and
// CAP_PERFMON, when auto cannot load them (the rest of the snapshot is
// printed) and when on cannot (exit 1, one line on stderr).
func TestSnapshotEventsOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, "tsal-")
	ev, err := openSnapshotEvents("off", 0)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := snapshotMain(ctx, snapshotOptions{Dial: dialInto(t, ns), Events: ev}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "\nConnection events (eBPF): off (--collector.events=off)\n") {
		t.Errorf("events off: no line saying so:\n%s", stdout.String())
	}

	bin := exporterBinary(t)
	run := func(mode string) (string, string, error) {
		argv := append(dropBPFCaps(t), bin, "snapshot", "--snapshot.wait=0", "--collector.events="+mode)
		cmd := ns.Command(ctx, argv[0], argv[1:]...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		return o.String(), e.String(), err
	}
	out, errOut, err := run("auto")
	if err != nil {
		t.Fatalf("auto without the capabilities: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "\nConnection events (eBPF): unavailable: ") || !strings.Contains(out, "CAP_BPF") {
		t.Errorf("auto without the capabilities: no line saying events are unavailable and why:\n%s", out)
	}
	if !strings.Contains(out, "TCP sockets on ") || !strings.Contains(out, "Active findings:") {
		t.Errorf("auto without the capabilities: the rest of the snapshot is missing:\n%s", out)
	}
	out, errOut, err = run("on")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("on without the capabilities: %v, want exit code 1", err)
	}
	if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "--collector.events=on") {
		t.Errorf("on without the capabilities: stderr %q, want one line naming --collector.events=on", errOut)
	}
	if out != "" {
		t.Errorf("on without the capabilities printed a snapshot:\n%s", out)
	}
}

// TestSnapshotAllNamespacesEvents snapshots every namespace with events
// counted in all of them (cookie 0, as --netns=all loads them): two
// namespaces of its own, with 3 and 7 refused connects after the first
// read, each show exactly their own in their section.
func TestSnapshotAllNamespacesEvents(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := events.Check(); err != nil {
		t.Fatalf("the event programs cannot load here (run as root on a kernel with BTF): %v", err)
	}
	ev, err := openSnapshotEvents("on", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ev.close()
	ev.begin()
	refused := map[*fixture.Netns]int{}
	for _, n := range []int{3, 7} {
		ns := fixture.NewNetnsPrefix(t, "tssa-")
		refused[ns] = n
		err := ns.Do(func() error {
			for range n {
				// Port 9 (discard) listens nowhere in a new namespace.
				if _, err := net.Dial("tcp4", "127.0.0.1:9"); !errors.Is(err, syscall.ECONNREFUSED) {
					return fmt.Errorf("dial a closed port: %w, want ECONNREFUSED", err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	code := snapshotMain(ctx, snapshotOptions{AllNamespaces: true, ProcRoot: "/proc", Events: ev}, &stdout, &stderr)
	out := stdout.String()
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	sections := strings.Split(out, "TCP sockets on ")
	for ns, n := range refused {
		var sec string
		for _, s := range sections {
			if strings.Contains(strings.SplitN(s, "\n", 2)[0], "("+ns.Path()+")") {
				sec = s
			}
		}
		if sec == "" {
			t.Errorf("no section for %s", ns.Path())
			continue
		}
		if want := fmt.Sprintf("connect failures: %d;", n); !strings.Contains(sec, want) {
			t.Errorf("%s: no %q in its section:\n%s", ns.Path(), want, sec)
		}
		if row := rowFields(sec, "127.0.0.1:9"); len(row) != 3 || row[1] != "refused" || row[2] != strconv.Itoa(n) {
			t.Errorf("%s: connect failures row %v, want 127.0.0.1:9 refused %d", ns.Path(), row, n)
		}
	}
}
