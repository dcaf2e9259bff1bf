//go:build linux

package collector_test

import (
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// startCloseWaitOwner starts a copy of sleep(1) named name that holds the
// client end of a loopback connection inside ns whose server end this
// process then closes: the child owns one CLOSE_WAIT socket, and nothing
// else does. It returns the child's pid and local port.
func startCloseWaitOwner(t *testing.T, ns *fixture.Netns, name string) (pid int, port int) {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("sleep(1) is needed as the socket's owner: %v", err)
	}
	body, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(bin, body, 0o755); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	var client net.Conn
	if err := ns.Do(func() error {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		client, err = net.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	port = client.LocalAddr().(*net.TCPAddr).Port
	client.Close()
	cmd := exec.Command(bin, "120")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The server closes: the client end, now held only by the child, goes
	// to CLOSE_WAIT.
	server.Close()
	return cmd.Process.Pid, port
}

// familyNames gathers reg and returns its families by name.
func familyNames(t *testing.T, reg *prometheus.Registry) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	mfs, err := reg.Gather()
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out, err
}

// TestInvalidUTF8ProcessNameKeepsMetrics is the reproduction of issue 10's
// first item against the real kernel: a process whose name the kernel cut
// inside a multi-byte character owns an old CLOSE_WAIT socket. The scrape
// must still serve every series, with the command label made valid.
func TestInvalidUTF8ProcessNameKeepsMetrics(t *testing.T) {
	ns := fixture.NewNetnsPrefix(t, "tshc-")
	// Eight two-byte characters: the kernel keeps 15 bytes of the name,
	// which ends in half a character.
	pid, port := startCloseWaitOwner(t, ns, strings.Repeat("é", 8)+"srv")
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.TrimSuffix(string(comm), "\n"); utf8.ValidString(c) {
		t.Fatalf("the kernel kept a valid UTF-8 name %q: the test does not reproduce the issue", c)
	}

	nsf, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	cfg := closeWaitConfig()
	cfg.CloseWaitMinAge = 50 * time.Millisecond
	s := collector.NewSampler(collector.SamplerOptions{
		Dial:          func() (*diag.Conn, error) { return diag.Dial(&diag.DialOptions{NetNS: int(nsf.Fd())}) },
		InNetns:       ns.Do,
		Detect:        cfg,
		LookupTimeout: 3 * time.Second,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		// The real lookup over /proc, told to scan the child first: the
		// shared test machine may hold more descriptors than one bounded
		// scan reaches.
		LookupOwners: func(inodes []uint64, timeout time.Duration) (map[uint64][]procnet.Process, bool, error) {
			owners, st, err := procnet.NewInodeLookup("").Lookup(inodes, procnet.LookupOptions{Timeout: timeout, Hint: []int{pid}})
			return owners, !st.Incomplete, err
		},
	})
	defer s.Close()
	// The first dump sees the socket; the second, past the minimum age,
	// looks its owner up.
	var smp *collector.Sample
	for i := 0; i < 2; i++ {
		if smp, err = s.Sample(collector.Full); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var group string
	for _, g := range smp.CloseWait {
		if g.Port == "ephemeral" || g.Port == strconv.Itoa(port) {
			group = g.Command
		}
	}
	if group == "" {
		t.Fatalf("the CLOSE_WAIT socket's owner was not looked up: groups %+v", smp.CloseWait)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.NewExporter(func() []collector.Target { return []collector.Target{{Sampler: s}} }, collector.ExporterOptions{}))
	fams, err := familyNames(t, reg)
	if err != nil {
		t.Errorf("gather: %v", err)
	}
	for _, name := range []string{
		"tcpstate_sockets", "tcpstate_sockets_max", "tcpstate_dumps_total", "tcpstate_kernel_read_errors_total",
		"tcpstate_netstat_listen_overflows_total", "tcpstate_sysctl", "tcpstate_close_wait_untracked_sockets",
		"tcpstate_close_wait_sockets", "tcpstate_close_wait_oldest_seconds", "tcpstate_folded_series",
		"tcpstate_listener_sockets", "tcpstate_sample_age_seconds",
	} {
		if fams[name] == nil {
			t.Errorf("%s missing from the scrape", name)
		}
	}
	found := false
	for _, m := range fams["tcpstate_close_wait_sockets"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() != "command" {
				continue
			}
			if !utf8.ValidString(l.GetValue()) {
				t.Errorf("command label %q is not valid UTF-8", l.GetValue())
			}
			if strings.HasPrefix(l.GetValue(), strings.Repeat("é", 7)) {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no tcpstate_close_wait_sockets series with the owner's (sanitised) name; families %v", fams["tcpstate_close_wait_sockets"])
	}
}
