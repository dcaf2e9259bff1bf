package collector

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/diagtest"
)

var (
	v4any = netip.IPv4Unspecified()
	v6any = netip.IPv6Unspecified()
	v4lo  = netip.MustParseAddr("127.0.0.1")
	v6lo  = netip.MustParseAddr("::1")
)

// fakeDial answers every dump with the sockets of the requested states.
var fakeDial = diagtest.Dialer

func sock(f diag.Family, st diag.State, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) diag.Socket {
	return diag.Socket{Family: f, State: st, Src: src, SrcPort: sport, Dst: dst, DstPort: dport}
}

func listener(f diag.Family, src netip.Addr, port uint16, q, limit uint32) diag.Socket {
	s := sock(f, diag.Listen, src, port, netip.Addr{}, 0)
	s.RQueue, s.WQueue = q, limit
	return s
}

func TestSampleCountsAndListeners(t *testing.T) {
	socks := []diag.Socket{
		listener(diag.AFInet, v4any, 80, 2, 128),
		listener(diag.AFInet, v4any, 80, 1, 128), // SO_REUSEPORT sibling
		listener(diag.AFInet6, v6any, 443, 0, 4096),
		listener(diag.AFInet, v4lo, 5432, 0, 244),
		sock(diag.AFInet, diag.Established, v4lo, 80, v4lo, 40000),
		sock(diag.AFInet, diag.Established, v4lo, 40000, v4lo, 80),
		sock(diag.AFInet6, diag.TimeWait, v6lo, 50000, v6lo, 443),
		sock(diag.AFInet, diag.SynRecv, netip.MustParseAddr("10.0.0.5"), 80, netip.MustParseAddr("10.9.9.9"), 1234),
		sock(diag.AFInet, diag.SynRecv, netip.MustParseAddr("10.0.0.5"), 443, netip.MustParseAddr("10.9.9.9"), 1235), // v4 to a dual-stack v6 listener
		sock(diag.AFInet6, diag.SynRecv, netip.MustParseAddr("::ffff:10.0.0.5"), 443, netip.MustParseAddr("::ffff:10.9.9.8"), 1236),
		sock(diag.AFInet, diag.CloseWait, v4lo, 5432, v4lo, 41000),
		{Family: 44, State: diag.Established},
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks)})
	smp, err := s.Sample(Full)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"ipv4/listen": 3, "ipv6/listen": 1, "ipv4/established": 2, "ipv6/time_wait": 1, "ipv4/syn_recv": 2, "ipv6/syn_recv": 1, "ipv4/close_wait": 1}
	for _, f := range Families {
		for _, st := range States {
			k := f.String() + "/" + st.String()
			if got := smp.Counts.Get(f, st); got != want[k] {
				t.Errorf("%s = %d, want %d", k, got, want[k])
			}
		}
	}
	if smp.Unknown != 1 {
		t.Errorf("unknown = %d, want 1", smp.Unknown)
	}
	got := fmt.Sprint(smp.Listeners)
	wantL := "[{{ipv4 0.0.0.0 80} 2 3 256 1 1 false [{10.9.9.0/24 1}] 0} {{ipv4 127.0.0.1 5432} 1 0 244 0 0 false [] 0} {{ipv6 :: 443} 1 0 4096 2 2 false [{10.9.9.0/24 2}] 0}]"
	if got != wantL {
		t.Errorf("listeners\n got %s\nwant %s", got, wantL)
	}

	// A rare sample replaces the rare states but keeps established and
	// time_wait from the full one.
	socks = append(socks[:4:4], sock(diag.AFInet, diag.CloseWait, v4lo, 1, v4lo, 2), sock(diag.AFInet, diag.CloseWait, v4lo, 1, v4lo, 3))
	s.opts.Dial = fakeDial(socks)
	s.Close()
	if _, err := s.Sample(Rare); err != nil {
		t.Fatal(err)
	}
	v := s.View(time.Now())
	if v.Counts.Get(diag.AFInet, diag.Established) != 2 || v.Counts.Get(diag.AFInet, diag.CloseWait) != 2 || v.Counts.Get(diag.AFInet, diag.SynRecv) != 0 {
		t.Errorf("merged counts wrong: %v", v.Counts)
	}
	if v.Max.Get(diag.AFInet, diag.SynRecv) != 2 || v.Max.Get(diag.AFInet, diag.CloseWait) != 2 {
		t.Errorf("window max wrong: %v", v.Max)
	}
}

func TestSamplerCountsFailures(t *testing.T) {
	fail := true
	s := NewSampler(SamplerOptions{Dial: func() (*diag.Conn, error) {
		if fail {
			return diag.NewConn(&diagtest.Transport{Handler: func(r diagtest.Request) ([][]byte, error) {
				return [][]byte{diagtest.Error(r.Seq, -1)}, nil
			}}), nil
		}
		return fakeDial(nil)()
	}})
	if _, err := s.Sample(Full); err == nil {
		t.Fatal("sample over a failing kernel succeeded")
	}
	v := s.View(time.Now())
	if v.Ready || v.Stats[Full].Errors != 1 || v.Stats[Full].Dumps != 1 {
		t.Fatalf("after failure: ready %v stats %+v", v.Ready, v.Stats[Full])
	}
	fail = false
	if _, err := s.Sample(Full); err != nil {
		t.Fatalf("sampler did not redial after a failure: %v", err)
	}
	if v := s.View(time.Now()); !v.Ready || v.Stats[Full].Errors != 1 || v.Stats[Full].Dumps != 2 {
		t.Fatalf("after recovery: ready %v stats %+v", v.Ready, v.Stats[Full])
	}
}

func TestExporterMetrics(t *testing.T) {
	socks := []diag.Socket{
		listener(diag.AFInet, v4any, 80, 5, 128),
		listener(diag.AFInet, v4lo, 8080, 1, 16),
		listener(diag.AFInet, v4lo, 9090, 0, 16),
		listener(diag.AFInet6, v6any, 22, 0, 128),
		sock(diag.AFInet, diag.Established, v4lo, 80, v4lo, 40000),
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks)})
	e := NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{MaxListeners: 2})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)

	// Before the first sample: self-metrics only, no socket counts.
	if n, err := testutil.GatherAndCount(reg, "tcpstate_sockets"); err != nil || n != 0 {
		t.Fatalf("before sampling: %d tcpstate_sockets series, err %v", n, err)
	}
	if _, err := s.Sample(Full); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "tcpstate_sockets", "tcpstate_sockets_max"); err != nil || n != 44 {
		t.Fatalf("tcpstate_sockets and _max: %d series, want 44 (err %v)", n, err)
	}
	want := `
# HELP tcpstate_listener_accept_queue_length Connections waiting in the accept queue of a listening address, summed over its sockets.
# TYPE tcpstate_listener_accept_queue_length gauge
tcpstate_listener_accept_queue_length{address="0.0.0.0",family="ipv4",port="80"} 5
tcpstate_listener_accept_queue_length{address="127.0.0.1",family="ipv4",port="8080"} 1
tcpstate_listener_accept_queue_length{address="other",family="ipv4",port="other"} 0
tcpstate_listener_accept_queue_length{address="other",family="ipv6",port="other"} 0
# HELP tcpstate_listener_accept_queue_limit Accept-queue limit of a listening address (listen backlog capped by somaxconn), summed over its sockets.
# TYPE tcpstate_listener_accept_queue_limit gauge
tcpstate_listener_accept_queue_limit{address="0.0.0.0",family="ipv4",port="80"} 128
tcpstate_listener_accept_queue_limit{address="127.0.0.1",family="ipv4",port="8080"} 16
tcpstate_listener_accept_queue_limit{address="other",family="ipv4",port="other"} 16
tcpstate_listener_accept_queue_limit{address="other",family="ipv6",port="other"} 128
# HELP tcpstate_folded_series Entries folded into an "other" series in the latest sample because a --collector.*.max limit was reached.
# TYPE tcpstate_folded_series gauge
tcpstate_folded_series{kind="clients"} 0
tcpstate_folded_series{kind="closewait"} 0
tcpstate_folded_series{kind="destinations"} 0
tcpstate_folded_series{kind="listeners"} 2
tcpstate_folded_series{kind="peers"} 0
# HELP tcpstate_dumps_total sock_diag dumps run.
# TYPE tcpstate_dumps_total counter
tcpstate_dumps_total{kind="full"} 1
tcpstate_dumps_total{kind="halfopen"} 0
tcpstate_dumps_total{kind="listen"} 0
tcpstate_dumps_total{kind="rare"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"tcpstate_listener_accept_queue_length", "tcpstate_listener_accept_queue_limit", "tcpstate_folded_series", "tcpstate_dumps_total"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestExporterTargetLabels(t *testing.T) {
	a := NewSampler(SamplerOptions{Dial: fakeDial([]diag.Socket{listener(diag.AFInet, v4any, 80, 0, 1)})})
	b := NewSampler(SamplerOptions{Dial: fakeDial([]diag.Socket{listener(diag.AFInet, v4any, 80, 0, 1)})})
	a.Sample(Full)
	b.Sample(Full)
	e := NewExporter(func() []Target {
		return []Target{{Sampler: a, Labels: []string{"host", "", ""}}, {Sampler: b, Labels: []string{"4026532000", "shop", "web-0"}}}
	}, ExporterOptions{TargetLabels: []string{"netns", "namespace", "pod"}})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	want := `
# HELP tcpstate_listener_sockets Listening sockets behind an address (more than one with SO_REUSEPORT).
# TYPE tcpstate_listener_sockets gauge
tcpstate_listener_sockets{address="0.0.0.0",family="ipv4",namespace="",netns="host",pod="",port="80"} 1
tcpstate_listener_sockets{address="0.0.0.0",family="ipv4",namespace="shop",netns="4026532000",pod="web-0",port="80"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcpstate_listener_sockets"); err != nil {
		t.Error(err)
	}
}

// The series built from a sample are reused until the next sample, which
// shows at the next scrape; the cache forgets targets that are gone.
func TestExporterSeriesFollowSamples(t *testing.T) {
	socks := []diag.Socket{listener(diag.AFInet, v4lo, 8080, 1, 16)}
	a := NewSampler(SamplerOptions{Dial: fakeDial(socks)})
	b := NewSampler(SamplerOptions{Dial: fakeDial([]diag.Socket{listener(diag.AFInet, v4any, 80, 0, 1)})})
	for _, s := range []*Sampler{a, b} {
		if _, err := s.Sample(Full); err != nil {
			t.Fatal(err)
		}
	}
	targets := []Target{{Sampler: a, Labels: []string{"host"}}, {Sampler: b, Labels: []string{"4026532000"}}}
	e := NewExporter(func() []Target { return targets }, ExporterOptions{TargetLabels: []string{"netns"}})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	queue := func(n int) string {
		return fmt.Sprintf(`
# HELP tcpstate_listener_accept_queue_length Connections waiting in the accept queue of a listening address, summed over its sockets.
# TYPE tcpstate_listener_accept_queue_length gauge
tcpstate_listener_accept_queue_length{address="0.0.0.0",family="ipv4",netns="4026532000",port="80"} 0
tcpstate_listener_accept_queue_length{address="127.0.0.1",family="ipv4",netns="host",port="8080"} %d
`, n)
	}
	for range 2 {
		if err := testutil.GatherAndCompare(reg, strings.NewReader(queue(1)), "tcpstate_listener_accept_queue_length"); err != nil {
			t.Fatal(err)
		}
	}
	socks[0].RQueue = 9
	if err := testutil.GatherAndCompare(reg, strings.NewReader(queue(1)), "tcpstate_listener_accept_queue_length"); err != nil {
		t.Fatalf("before the next sample: %v", err)
	}
	if _, err := a.Sample(Rare); err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(queue(9)), "tcpstate_listener_accept_queue_length"); err != nil {
		t.Fatalf("after a rare sample: %v", err)
	}

	targets = targets[:1]
	if _, err := testutil.GatherAndCount(reg); err != nil {
		t.Fatal(err)
	}
	e.cacheMu.Lock()
	n := len(e.cache)
	e.cacheMu.Unlock()
	if n != 1 {
		t.Errorf("cached targets after one was removed: %d, want 1", n)
	}
}

// A listener kept at the previous sample keeps its place against one with
// a slightly longer queue, and gives it up to a clearly longer one.
func TestListenerFoldingIsStable(t *testing.T) {
	socks := []diag.Socket{
		listener(diag.AFInet, v4lo, 8001, 5, 16),
		listener(diag.AFInet, v4lo, 8002, 4, 16),
		listener(diag.AFInet, v4lo, 8003, 3, 16),
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks)})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{MaxListeners: 2}))
	kept := func() []string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var ports []string
		for _, mf := range mfs {
			if mf.GetName() != "tcpstate_listener_accept_queue_length" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "port" && l.GetValue() != "other" {
						ports = append(ports, l.GetValue())
					}
				}
			}
		}
		return ports
	}
	for i, step := range []struct {
		queues [3]uint32
		want   string
	}{
		{[3]uint32{5, 4, 3}, "[8001 8002]"},
		{[3]uint32{5, 3, 4}, "[8001 8002]"}, // 8002 kept: 3+0+1 ties 4, and 8002 < 8003
		{[3]uint32{5, 3, 6}, "[8001 8003]"}, // 6 beats 3+0+1
		{[3]uint32{5, 6, 6}, "[8001 8003]"}, // 8003 kept: 6+1+1 beats 6
	} {
		for j, q := range step.queues {
			socks[j].RQueue = q
		}
		if _, err := s.Sample(Full); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(kept()); got != step.want {
			t.Errorf("sample %d, queues %v: listeners kept %s, want %s", i+1, step.queues, got, step.want)
		}
	}
}

// The two request forms count the same sockets: one legacy walk for both
// families, or one SOCK_DIAG_BY_FAMILY request per family.
func TestSampleMethodsAgree(t *testing.T) {
	socks := []diag.Socket{
		listener(diag.AFInet, v4any, 80, 0, 128),
		listener(diag.AFInet6, v6any, 443, 0, 128),
		sock(diag.AFInet, diag.Established, v4lo, 80, v4lo, 40000),
		sock(diag.AFInet6, diag.Established, v6lo, 443, v6lo, 40001),
		sock(diag.AFInet6, diag.NewSynRecv, v6lo, 443, v6lo, 40002),
	}
	var counts [2]Counts
	for i, m := range []diag.Method{diag.MethodAuto, diag.MethodV2} {
		smp, err := NewSampler(SamplerOptions{Dial: fakeDial(socks), Method: m}).Sample(Full)
		if err != nil {
			t.Fatal(err)
		}
		counts[i] = smp.Counts
	}
	if counts[0] != counts[1] {
		t.Errorf("legacy %v, v2 %v", counts[0], counts[1])
	}
	if n := counts[1].Get(diag.AFInet6, diag.Established); n != 1 {
		t.Errorf("v2: %d IPv6 established, want 1", n)
	}
	if n := counts[1].Get(diag.AFInet6, diag.SynRecv); n != 1 {
		t.Errorf("v2: %d IPv6 syn_recv, want 1", n)
	}
}
