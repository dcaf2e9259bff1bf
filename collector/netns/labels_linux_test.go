//go:build linux

package netns

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/alerts"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/collector/podinfo"
	"github.com/tcpstate/tcpstate-exporter/diag"
)

// hostileStrings are the label sources' worst values: invalid UTF-8
// (the kernel's 15-byte cut included), empty, 10 KB, control characters.
var hostileStrings = []string{
	strings.Repeat("é", 7) + "\xc3",
	"",
	strings.Repeat("k", 10<<10),
	"a\nb\x00c\x1b[31m\x7f\u0085",
	"\xff\xfe\xfd",
}

// TestExternalLabelSourcesNeverBlankTheScrape feeds hostile values through
// every external label source of --netns=all: process names (the comm of
// the process owning a CLOSE_WAIT socket, read by the real owner lookup
// from a procfs tree), pod namespaces and names (through the podinfo
// resolver's inputs: the pod's cgroup file and the Kubernetes API's
// metadata), and the alerts built from them. Every series of every other
// kind must still be served, every label value valid, and no scrape error
// counted.
func TestExternalLabelSourcesNeverBlankTheScrape(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	ft.process("1", "host")
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := metadatafake.NewSimpleMetadataClient(scheme)
	lo := netip.MustParseAddr("127.0.0.1")
	socks := map[Key][]diag.Socket{ft.key("host"): fakeSockets(1, 1)}
	for i, bad := range hostileStrings {
		name := fmt.Sprintf("n%d", i)
		pid := strconv.Itoa(100 + i)
		ft.process(pid, name)
		uid := fmt.Sprintf("%08d-0000-0000-0000-000000000000", i)
		// The resolver's inputs: the process's cgroup names the pod, and
		// the API names the pod with hostile strings.
		writeFile(t, filepath.Join(ft.proc(), pid, "cgroup"), "0::/kubepods.slice/kubepods-pod"+strings.ReplaceAll(uid, "-", "_")+".slice/cri-containerd-1.scope\n")
		p := &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: bad, Name: bad + "-pod", UID: types.UID(uid)},
		}
		if err := client.Tracker().Add(p); err != nil {
			t.Fatalf("adding pod %d: %v", i, err)
		}
		// The process owns a CLOSE_WAIT socket; its comm is hostile.
		inode := uint32(9000 + i)
		writeFile(t, filepath.Join(ft.proc(), pid, "comm"), bad+"\n")
		if err := os.MkdirAll(filepath.Join(ft.proc(), pid, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("socket:["+strconv.Itoa(int(inode))+"]", filepath.Join(ft.proc(), pid, "fd", "3")); err != nil {
			t.Fatal(err)
		}
		cw := diag.Socket{Family: diag.AFInet, State: diag.CloseWait, Src: lo, SrcPort: 8080, Dst: lo, DstPort: 50000, Cookie: uint64(i + 1), Inode: inode}
		socks[ft.key(name)] = append(fakeSockets(2, 3), cw)
	}
	logs := slog.New(slog.DiscardHandler)
	pods := podinfo.NewWithClient(client, podinfo.ResolverOptions{NodeName: "node1", ProcRoot: ft.proc(), Logger: logs})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); pods.Shutdown() }()
	pods.Start(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for !pods.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("pod watch did not sync within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	cfg := detect.DefaultConfig()
	cfg.CloseWaitMinAge = time.Millisecond
	cfg.CloseWaitThreshold = 1
	scrapeErrs := collector.NewScrapeErrors(logs)
	m, err := NewManager(ManagerOptions{
		ProcRoot: ft.proc(), RunDirs: []string{}, Refresh: time.Hour, Interval: 10 * time.Millisecond, CPUBudget: 1,
		Logger: logs, PodUID: pods.PodUID, PodName: pods.Lookup, ScrapeErrors: scrapeErrs,
		NewSampler: func(h *Handle) (*collector.Sampler, error) {
			return collector.NewSampler(collector.SamplerOptions{Interval: 10 * time.Millisecond, Dial: fakeDial(socks[h.Namespace().Key]),
				ProcRoot: ft.proc(), Detect: cfg, Logger: logs}), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Wait until every namespace's CLOSE_WAIT owner has been looked up
	// (lookups run 2 ms after the first sighting at the earliest).
	deadline = time.Now().Add(20 * time.Second)
	for {
		resolved := 0
		for _, tg := range m.Targets() {
			if v := tg.Sampler.View(time.Now()); v.Latest != nil {
				for _, g := range v.Latest.CloseWait {
					if len(g.PIDs) > 0 {
						resolved++
					}
				}
			}
		}
		if resolved == len(hostileStrings) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d CLOSE_WAIT owners looked up within 20 s", resolved, len(hostileStrings))
		}
		time.Sleep(20 * time.Millisecond)
	}

	engine := alerts.NewEngine(alerts.EngineOptions{Logger: logs, CollectErrors: func(errs []error) { scrapeErrs.Record(collector.PartAlerts, errs) }})
	var tf []alerts.TargetFindings
	for _, tg := range m.Targets() {
		labels := map[string]string{}
		for i, n := range TargetLabels {
			labels[n] = tg.Labels[i]
		}
		tf = append(tf, alerts.TargetFindings{Target: alerts.Target{Key: tg.Key(), Labels: labels}, Findings: tg.Sampler.Findings()})
	}
	engine.Evaluate(time.Now(), tf)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.NewExporter(m.Targets, collector.ExporterOptions{TargetLabels: TargetLabels, Errors: scrapeErrs}),
		m.Collector(), engine.Collector(), scrapeErrs)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	byNetns := map[string]map[string]int{} // netns -> family -> series
	alertsSeen := 0
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			netns := ""
			for _, l := range mt.GetLabel() {
				v := l.GetValue()
				if !utf8.ValidString(v) || len(v) > collector.MaxLabelLen || strings.ContainsFunc(v, unicode.IsControl) {
					t.Errorf("%s: label %s=%q is not a safe value", mf.GetName(), l.GetName(), v)
				}
				if l.GetName() == "netns" {
					netns = v
				}
			}
			if byNetns[netns] == nil {
				byNetns[netns] = map[string]int{}
			}
			byNetns[netns][mf.GetName()]++
			if mf.GetName() == "tcpstate_alert" {
				alertsSeen++
			}
			if mf.GetName() == "tcpstate_scrape_errors_total" && mt.GetCounter().GetValue() != 0 {
				t.Errorf("scrape errors counted: %v", mt)
			}
		}
	}
	for i := range hostileStrings {
		netns := strconv.FormatUint(ft.key(fmt.Sprintf("n%d", i)).Inode, 10)
		got := byNetns[netns]
		for name, want := range map[string]int{
			"tcpstate_sockets": 22, "tcpstate_listener_sockets": 2, "tcpstate_close_wait_sockets": 1,
			"tcpstate_dumps_total": len(collector.Kinds), "tcpstate_sysctl": 0, "tcpstate_kernel_read_errors_total": len(collector.ReadErrorFiles()),
		} {
			if got[name] != want {
				t.Errorf("namespace %d (%q): %d %s series, want %d", i, hostileStrings[i][:min(len(hostileStrings[i]), 20)], got[name], name, want)
			}
		}
	}
	if byNetns[""]["tcpstate_netns_namespaces"] != 1 {
		t.Error("tcpstate_netns_namespaces missing")
	}
	if alertsSeen < len(hostileStrings) {
		t.Errorf("%d tcpstate_alert series, want at least one TCPCloseWaitLeak per namespace (%d)", alertsSeen, len(hostileStrings))
	}
	if f := scrapeErrs.Failing(); len(f) > 0 {
		t.Errorf("failing parts: %v", f)
	}
	// The names did arrive (sanitised): the 10 KB namespace is cut.
	for _, tg := range m.Targets() {
		if tg.Labels[0] == strconv.FormatUint(ft.key("n2").Inode, 10) && len(tg.Labels[1]) != collector.MaxLabelLen {
			t.Errorf("10 KB pod namespace became %d bytes, want %d", len(tg.Labels[1]), collector.MaxLabelLen)
		}
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
