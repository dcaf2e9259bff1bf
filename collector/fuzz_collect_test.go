package collector

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// FuzzCollect runs the whole path from a sample to a scrape with arbitrary
// label sources: the owner's process name, a target's pod namespace and
// name, and the namespace's netstat file. Whatever they hold, the scrape
// must gather on a pedantic registry without error, serve the socket
// counts of every target, carry only safe label values, and count no
// scrape error.
func FuzzCollect(f *testing.F) {
	for _, s := range [][4]string{
		{"nginx", "shop", "web-0", "TcpExt: ListenOverflows\nTcpExt: 5\n"},
		{strings.Repeat("é", 7) + "\xc3", "ns\xff", "pod\x00", ""},
		{"", "", "", "TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n"},
		{"a\nb\x1b[31m", strings.Repeat("n", 10<<10), "\u0085", "\xff\xfe"},
		{"other", "other", "other", "TcpExt: \n"},
	} {
		f.Add(s[0], s[1], s[2], []byte(s[3]))
	}
	root := f.TempDir()
	netstat := filepath.Join(root, "thread-self", "net", "netstat")
	if err := os.MkdirAll(filepath.Dir(netstat), 0o755); err != nil {
		f.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	socks := []diag.Socket{
		listener(diag.AFInet, lo, 8080, 0, 128),
		closeWaitSock(lo, 8080, lo, 50000, 1, 700),
		closeWaitSock(lo, 8081, lo, 50001, 2, 701),
	}
	cfg := detect.DefaultConfig()
	cfg.CloseWaitMinAge = 0
	f.Fuzz(func(t *testing.T, comm, ns, pod string, kernel []byte) {
		if err := os.WriteFile(netstat, kernel, 0o644); err != nil {
			t.Fatal(err)
		}
		owner := func(inodes []uint64, _ time.Duration) (map[uint64][]procnet.Process, bool, error) {
			out := map[uint64][]procnet.Process{}
			for _, ino := range inodes {
				out[ino] = []procnet.Process{{PID: 42, Comm: comm}}
			}
			return out, true, nil
		}
		var samplers []*Sampler
		for range 3 {
			s := NewSampler(SamplerOptions{Dial: fakeDial(socks), ProcRoot: root, Logger: quiet, Detect: cfg, LookupOwners: owner})
			if _, err := s.Sample(Full); err != nil {
				t.Fatal(err)
			}
			samplers = append(samplers, s)
		}
		errs := NewScrapeErrors(quiet)
		targets := []Target{
			{Sampler: samplers[0], Labels: []string{HostTarget, "", ""}},
			{Sampler: samplers[1], Labels: []string{"1", ns, pod}},
			{Sampler: samplers[2], Labels: []string{"2", pod, ns}},
		}
		e := NewExporter(func() []Target { return targets },
			ExporterOptions{TargetLabels: []string{"netns", "namespace", "pod"}, MaxTargets: 2, Errors: errs})
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(e, errs)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		sockets := map[string]int{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					v := l.GetValue()
					if !utf8.ValidString(v) || len(v) > MaxLabelLen || strings.ContainsFunc(v, unicode.IsControl) {
						t.Fatalf("%s: label %s=%q is not safe", mf.GetName(), l.GetName(), v)
					}
					if mf.GetName() == "tcpstate_sockets" && l.GetName() == "netns" {
						sockets[v]++
					}
				}
			}
		}
		// The host target and one other are kept; the third folds.
		if sockets[HostTarget] != 22 || sockets["1"]+sockets["2"] != 22 || sockets[OtherTarget] != 22 {
			t.Fatalf("tcpstate_sockets series per netns %v, want 22 for host, one kept target and other", sockets)
		}
		if f := errs.Failing(); len(f) > 0 {
			t.Fatalf("scrape errors: %v", f)
		}
	})
}
