//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture/rawsock"
)

// dialInto returns a Dial function for the namespace, through an open
// handle closed at the end of the test.
func dialInto(t *testing.T, ns *fixture.Netns) func() (*diag.Conn, error) {
	t.Helper()
	fd, err := unix.Open(ns.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("opening %s: %v", ns.Path(), err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func() (*diag.Conn, error) { return diag.Dial(&diag.DialOptions{NetNS: fd}) }
}

// rowFields returns the whitespace-separated fields of the first output
// line whose first field is first.
func rowFields(out, first string) []string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}

// TestSnapshotInNamespace runs the snapshot against a namespace holding
// known sockets and checks every count, the listeners at risk and that the
// detectors see the sampled target.
func TestSnapshotInNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := fixture.NewNetnsPrefix(t, "tsal-")
	cli := fixture.NewNetnsPrefix(t, "tsal-")

	want := map[fixture.Family]fixture.Counts{}
	build := func(s *fixture.Set, err error) *fixture.Set {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		want[s.Family()] = want[s.Family()].Add(s.ExpectedIn(srv))
		return s
	}
	build(srv.Established(ctx, fixture.IPv4, 5))
	build(srv.CloseWait(ctx, fixture.IPv6, 3))
	syn := build(srv.SynRecv(ctx, cli, fixture.IPv4, 2))

	// A listener with backlog 4 and three connections nobody accepts:
	// its accept queue is 75% full.
	var fds []int
	t.Cleanup(func() { rawsock.CloseAll(fds) })
	var full netip.AddrPort
	err := srv.Do(func() error {
		lfd, addr, err := rawsock.Listen(netip.MustParseAddrPort("127.0.0.1:0"), 4)
		if err != nil {
			return err
		}
		fds = append(fds, lfd)
		full = addr
		var clients []int
		for range 3 {
			fd, _, err := rawsock.Dial(addr, false)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			clients = append(clients, fd)
		}
		if err := rawsock.WaitConnected(clients, time.Now().Add(10*time.Second)); err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, limit, err := rawsock.ListenQueue(lfd)
			if err != nil {
				return err
			}
			if n == 3 && limit == 4 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("accept queue %d/%d, want 3/4", n, limit)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	c := want[fixture.IPv4]
	c[fixture.Listen]++
	c[fixture.Established] += 6
	want[fixture.IPv4] = c

	// A detector over the sampled target: one finding per listener with
	// half-open connections, to check the findings reach the output.
	detector := func(tg collector.Target) []detect.Finding {
		var out []detect.Finding
		for _, l := range tg.Sampler.View(time.Now()).Listeners {
			if l.SynRecv > 0 {
				out = append(out, detect.Finding{
					Alert: "TCPSynRecvSurge", Severity: detect.Warning,
					Labels:   map[string]string{"port": strconv.Itoa(int(l.Port))},
					Summary:  "half-open connections on " + l.Addr.String(),
					Evidence: map[string]string{"syn_recv": strconv.FormatUint(l.SynRecv, 10)},
					Value:    float64(l.SynRecv),
				})
			}
		}
		return out
	}
	var stdout, stderr bytes.Buffer
	code := snapshotMain(ctx, snapshotOptions{Dial: dialInto(t, srv), Wait: 200 * time.Millisecond, Findings: detector}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("snapshot output:\n%s", out)
	if code != 0 || stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}

	var total [2]int
	for _, st := range fixture.States() {
		v4, v6 := want[fixture.IPv4][st], want[fixture.IPv6][st]
		total[0] += v4
		total[1] += v6
		wantRow := []string{st.String(), strconv.Itoa(v4), strconv.Itoa(v6), strconv.Itoa(v4 + v6)}
		if got := rowFields(out, st.String()); strings.Join(got, " ") != strings.Join(wantRow, " ") {
			t.Errorf("state row %v, want %v", got, wantRow)
		}
	}
	if got, wantRow := strings.Join(rowFields(out, "total"), " "), fmt.Sprintf("total %d %d %d", total[0], total[1], total[0]+total[1]); got != wantRow {
		t.Errorf("total row %q, want %q", got, wantRow)
	}
	if total != [2]int{21, 7} {
		t.Errorf("fixture totals %v, want [21 7]", total)
	}

	if !strings.Contains(out, "Listeners at risk (accept queue at least half full, or SYN_RECV): 2 of 4\n") {
		t.Errorf("want 2 of 4 listeners at risk")
	}
	lines := strings.Split(out, "\n")
	var risk [][]string
	for i, l := range lines {
		if strings.HasPrefix(l, "FAMILY") {
			risk = append(risk, strings.Fields(lines[i+1]), strings.Fields(lines[i+2]))
			break
		}
	}
	if len(risk) != 2 {
		t.Fatal("no listeners-at-risk table")
	}
	// Fullest first: the 3/4 queue, then the one with SYN_RECV.
	if got, w := strings.Join(risk[0], " "), fmt.Sprintf("ipv4 127.0.0.1 %d 3 4 75%% 0 1 0", full.Port()); got != w {
		t.Errorf("first listener at risk %q, want %q", got, w)
	}
	sl := syn.Listeners()[0]
	if r := risk[1]; len(r) != 9 || r[0] != "ipv4" || r[1] != sl.Addr().String() || r[2] != strconv.Itoa(int(sl.Port())) || r[3] != "0" || r[6] != "2" || r[7] != "1" {
		t.Errorf("second listener at risk %v, want %v with queue 0, 2 SYN_RECV, 1 socket", r, sl)
	}

	if !strings.Contains(out, "Active findings: 1\n") || !strings.Contains(out, fmt.Sprintf(`warning  TCPSynRecvSurge  {port="%d"}  value=2`, sl.Port())) {
		t.Errorf("findings section missing or wrong")
	}
	if f := rowFields(out, "evidence:"); strings.Join(f, " ") != "evidence: syn_recv 2" {
		t.Errorf("evidence row %v", f)
	}
}

// TestSnapshotKernelErrorExitsOne makes the kernel refuse the dump (a
// namespace handle that is not a namespace) and expects exit 1 and one line.
func TestSnapshotKernelErrorExitsOne(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var stdout, stderr bytes.Buffer
	code := snapshotMain(context.Background(), snapshotOptions{
		Dial: func() (*diag.Conn, error) { return diag.Dial(&diag.DialOptions{NetNS: fd}) },
	}, &stdout, &stderr)
	msg := stderr.String()
	t.Logf("stderr: %s", msg)
	if code != 1 || stdout.Len() != 0 {
		t.Errorf("exit %d, stdout %q: want 1 and nothing", code, stdout.String())
	}
	if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "tcpstate-exporter: snapshot: ") || !strings.Contains(msg, "sock_diag") {
		t.Errorf("stderr %q: want one line naming sock_diag", msg)
	}
}

// TestSnapshotAllNamespaces snapshots every namespace on the machine and
// finds two of its own, each with its own exact counts, in sections of
// their own.
func TestSnapshotAllNamespaces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	counts := map[*fixture.Netns]int{}
	for _, n := range []int{3, 5} {
		ns := fixture.NewNetnsPrefix(t, "tssa-")
		s, err := ns.Established(ctx, fixture.IPv4, n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		counts[ns] = s.ExpectedIn(ns)[fixture.Established]
	}

	var stdout, stderr bytes.Buffer
	code := snapshotMain(ctx, snapshotOptions{AllNamespaces: true, ProcRoot: "/proc", Wait: 100 * time.Millisecond, Findings: samplerFindings}, &stdout, &stderr)
	out := stdout.String()
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	sections := strings.Split(out, "TCP sockets on ")
	if !strings.Contains(sections[1], "network namespace host") {
		t.Errorf("first section is not the host's:\n%s", sections[1])
	}
	for ns, want := range counts {
		var sec string
		for _, s := range sections {
			if strings.Contains(strings.SplitN(s, "\n", 2)[0], "("+ns.Path()+")") {
				sec = s
			}
		}
		if sec == "" {
			t.Errorf("no section for %s in:\n%s", ns.Path(), out)
			continue
		}
		row := rowFields(sec, "established")
		if len(row) != 4 || row[1] != strconv.Itoa(want) || row[3] != strconv.Itoa(want) {
			t.Errorf("%s: established row %v, want %d IPv4 and in total", ns.Path(), row, want)
		}
		if !strings.Contains(sec, "a full dump and a rare-state dump after it") {
			t.Errorf("%s: not sampled twice:\n%s", ns.Path(), sec)
		}
	}
}
