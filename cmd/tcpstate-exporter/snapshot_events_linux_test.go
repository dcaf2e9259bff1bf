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
// events' first read, 10 connections open and close, 5 connects hit a
// closed port and 4 accepted connections are closed with SO_LINGER 0 by a
// server on 127.0.0.2: the events section counts exactly those, by reason,
// destination, peer and listener port.
func TestSnapshotEvents(t *testing.T) {
	const nConn, nRefused, nLinger = 10, 5, 4
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

	var port, closed, lingerPort int
	err = ns.Do(func() error {
		d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		port = ln.Addr().(*net.TCPAddr).Port
		buf := make([]byte, 1)
		for range nConn {
			c, err := d.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return err
			}
			s, err := ln.Accept()
			if err != nil {
				return err
			}
			c.Close()
			s.Read(buf) // the client's FIN: no data follows, so no reset
			s.Close()
		}
		free, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		closed = free.Addr().(*net.TCPAddr).Port
		free.Close()
		for range nRefused {
			if _, err := d.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(closed)); !errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("dial a closed port: %w, want ECONNREFUSED", err)
			}
		}
		lln, err := net.Listen("tcp4", "127.0.0.2:0")
		if err != nil {
			return err
		}
		defer lln.Close()
		lingerPort = lln.Addr().(*net.TCPAddr).Port
		for range nLinger {
			c, err := d.Dial("tcp4", lln.Addr().String())
			if err != nil {
				return err
			}
			s, err := lln.Accept()
			if err != nil {
				return err
			}
			if err := s.(*net.TCPConn).SetLinger(0); err != nil {
				return err
			}
			s.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
				return fmt.Errorf("client read after the server's abort: %w, want ECONNRESET", err)
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	code := snapshotMain(ctx, snapshotOptions{Dial: dialInto(t, ns), Wait: 100 * time.Millisecond, Findings: findingsFor, Events: ev}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("snapshot output:\n%s", out)
	if code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	opened := nConn + nLinger
	for _, want := range []string{
		"\nConnection events over the last ",
		fmt.Sprintf("Opened: %d active, %d passive; closed: %d active, %d passive, 0 opened before the programs loaded\n", opened, opened, opened, opened),
		fmt.Sprintf("connect failures: %d; retransmitted segments: 0, SYN-ACKs: 0\n", nRefused),
		"Retransmitted segments by peer: none\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	noSocket := "no_socket"
	if !ev.src.HasResetReason() {
		noSocket = "unknown"
	}
	rows := map[string][]string{
		noSocket:                            {noSocket, strconv.Itoa(nRefused)},
		"127.0.0.1:" + strconv.Itoa(closed): {"127.0.0.1:" + strconv.Itoa(closed), "refused", strconv.Itoa(nRefused)},
		"127.0.0.2":                         {"127.0.0.2", strconv.Itoa(lingerPort), strconv.Itoa(nLinger)},
		"refused resets received":           {"127.0.0.1", strconv.Itoa(closed), strconv.Itoa(nRefused)},
		"127.0.0.1:" + strconv.Itoa(port) + "open":  {"127.0.0.1:" + strconv.Itoa(port), "opened", strconv.Itoa(nConn)},
		strconv.Itoa(lingerPort) + "open":           {strconv.Itoa(lingerPort), "opened", strconv.Itoa(nLinger)},
		strconv.Itoa(lingerPort) + "close":          {strconv.Itoa(lingerPort), "closed", strconv.Itoa(nLinger)},
		"127.0.0.1:" + strconv.Itoa(port) + "close": {"127.0.0.1:" + strconv.Itoa(port), "closed", strconv.Itoa(nConn)},
	}
	lines := strings.Split(out, "\n")
	for name, want := range rows {
		found := false
		for _, l := range lines {
			if strings.Join(strings.Fields(l), " ") == strings.Join(want, " ") {
				found = true
			}
		}
		if !found {
			t.Errorf("no row %q (%s)", strings.Join(want, " "), name)
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
