package detect

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// baseSysctls are a namespace's sysctls with the kernel defaults and a
// 1000-port local range.
func baseSysctls() procnet.Sysctls {
	s := procnet.Sysctls{
		PortRange:        procnet.PortRange{Low: 40000, High: 40999},
		TCPTWReuse:       2,
		TCPMaxTWBuckets:  1000,
		Somaxconn:        4096,
		TCPMaxSynBacklog: 1024,
		TCPSyncookies:    1,
		TCPMaxOrphans:    1000,
	}
	for _, k := range []procnet.Sysctl{procnet.SysctlIPLocalPortRange, procnet.SysctlIPLocalReservedPorts,
		procnet.SysctlTCPTWReuse, procnet.SysctlTCPMaxTWBuckets, procnet.SysctlSomaxconn,
		procnet.SysctlTCPMaxSynBacklog, procnet.SysctlTCPSyncookies, procnet.SysctlTCPMaxOrphans} {
		s.Present = s.Present.Add(k)
	}
	return s
}

// counters returns Counters with every field present and the given values.
func counters(vals map[procnet.Field]uint64) procnet.Counters {
	var c procnet.Counters
	for _, f := range procnet.Fields() {
		c.Present = c.Present.Add(f)
	}
	for f, v := range vals {
		switch f {
		case procnet.FieldSyncookiesSent:
			c.SyncookiesSent = v
		case procnet.FieldTCPReqQFullDoCookies:
			c.TCPReqQFullDoCookies = v
		case procnet.FieldTCPReqQFullDrop:
			c.TCPReqQFullDrop = v
		case procnet.FieldListenOverflows:
			c.ListenOverflows = v
		case procnet.FieldListenDrops:
			c.ListenDrops = v
		case procnet.FieldOutRsts:
			c.OutRsts = v
		case procnet.FieldEstabResets:
			c.EstabResets = v
		case procnet.FieldTCPAbortOnTimeout:
			c.TCPAbortOnTimeout = v
		case procnet.FieldTCPTimeWaitOverflow:
			c.TCPTimeWaitOverflow = v
		default:
			panic("counters: field not handled: " + f.String())
		}
	}
	return c
}

// build returns a history of n summaries one step apart, each filled by fn.
func build(n int, step time.Duration, fn func(i int, s *Summary)) *History {
	h := NewHistory(time.Hour, 4000)
	for i := range n {
		s := Summary{Time: t0.Add(time.Duration(i) * step), Sysctls: baseSysctls(), Counters: counters(nil)}
		fn(i, &s)
		h.Push(s)
	}
	return h
}

var web = ListenerKey{Family: diag.AFInet, Addr: netip.MustParseAddr("10.0.0.1"), Port: 443}

func lst(k ListenerKey, synRecv, q, limit uint64) Listener {
	return Listener{ListenerKey: k, Sockets: 1, SynRecv: synRecv, QueueLen: q, QueueLimit: limit}
}

func find(fs []Finding, alert string, sev Severity) *Finding {
	for i := range fs {
		if fs[i].Alert == alert && fs[i].Severity == sev {
			return &fs[i]
		}
	}
	return nil
}

func checkEvidence(t *testing.T, f *Finding, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := f.Evidence[k]; !ok || got != v {
			t.Errorf("%s evidence %s = %q, want %q (all: %v)", f.Alert, k, got, v, f.Evidence)
		}
	}
	if f.Summary == "" || f.Description == "" {
		t.Errorf("%s without summary or description: %+v", f.Alert, f)
	}
}

func mustDetectors(t *testing.T) *Detectors {
	t.Helper()
	d, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSynRecvSurgeFloodWithCookies(t *testing.T) {
	cfg := DefaultConfig()
	// 2 minutes of calm, then 3 seconds of flood: SYN_RECV pinned at the
	// backlog + 1, syncookies climbing by 800/s, then calm again.
	const floodAt, floodEnd = 120, 123
	sample := func(i int, s *Summary) {
		l := lst(web, 1, 0, 128)
		cookies := uint64(0)
		if i >= floodAt {
			cookies = 800 * uint64(min(i, floodEnd)-floodAt+1)
		}
		if i >= floodAt && i < floodEnd {
			l.SynRecv = 129
			l.SynSources, l.SynSourcesCapped = 129, false
			l.TopSources = []PrefixCount{{netip.MustParsePrefix("203.0.113.0/24"), 3}, {netip.MustParsePrefix("198.51.100.0/24"), 2}}
		}
		s.Listeners = []Listener{l}
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldSyncookiesSent: cookies, procnet.FieldTCPReqQFullDoCookies: cookies})
	}
	if fs := SynRecvSurge(&cfg, build(floodAt, time.Second, sample)); len(fs) != 0 {
		t.Fatalf("calm history: %v", fs)
	}
	fs := SynRecvSurge(&cfg, build(floodAt+1, time.Second, sample))
	if len(fs) != 1 {
		t.Fatalf("flood: %d findings, want 1: %v", len(fs), fs)
	}
	f := &fs[0]
	if f.Alert != AlertSynRecvSurge || f.Severity != Warning || f.Labels["address"] != "10.0.0.1" || f.Labels["port"] != "443" || f.Labels["family"] != "ipv4" {
		t.Errorf("finding identity: %s %s %v", f.Alert, f.Severity, f.Labels)
	}
	checkEvidence(t, f, map[string]string{
		"syn_recv": "129", "limit": "128", "cookies_per_second": "800", "distinct_sources": "129",
		"top_source_prefixes": "203.0.113.0/24 (3), 198.51.100.0/24 (2)",
		"sources":             "many random sources: spoofed SYN flood likely",
		"reasons":             "syn_queue_full,above_baseline,syncookies", "tcp_syncookies": "1",
	})
	if f.Value != 129 {
		t.Errorf("value %v, want 129", f.Value)
	}
	// After the flood: cookies stop, SYN_RECV drains: the finding clears.
	if fs := SynRecvSurge(&cfg, build(floodEnd+2, time.Second, sample)); len(fs) != 0 {
		t.Fatalf("after the flood: %v", fs)
	}
}

func TestSynRecvSurgeWithoutCookiesIsCritical(t *testing.T) {
	cfg := DefaultConfig()
	h := build(5, time.Second, func(i int, s *Summary) {
		s.Sysctls.TCPSyncookies = 0
		// With syncookies off the limit is min(backlog, 3/4 of tcp_max_syn_backlog).
		s.Sysctls.TCPMaxSynBacklog = 256
		s.Listeners = []Listener{lst(web, uint64(40*i), 0, 4096)}
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldTCPReqQFullDrop: uint64(100 * i)})
	})
	fs := SynRecvSurge(&cfg, h)
	if len(fs) != 1 || fs[0].Severity != Critical {
		t.Fatalf("want one critical finding, got %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"syn_recv": "160", "limit": "192", "drops_per_second": "100", "reasons": "syn_drops"})
}

func TestSynRecvSurgeBaseline(t *testing.T) {
	cfg := DefaultConfig()
	crowd := ListenerKey{Family: diag.AFInet6, Addr: netip.IPv6Unspecified(), Port: 8080}
	sample := func(surgeAt int) func(int, *Summary) {
		return func(i int, s *Summary) {
			l := lst(crowd, 5, 0, 4096)
			if i >= surgeAt {
				l.SynRecv = 300
				l.SynSources = 2
				l.TopSources = []PrefixCount{{netip.MustParsePrefix("2001:db8:1::/64"), 300}}
			}
			s.Listeners = []Listener{l}
		}
	}
	// A surge far above the baseline, well below the limit, no cookies.
	fs := SynRecvSurge(&cfg, build(121, time.Second, sample(120)))
	if len(fs) != 1 {
		t.Fatalf("surge above baseline: %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"reasons": "above_baseline", "baseline": "5", "syn_recv": "300",
		"sources": "few sources: a flash crowd behind few addresses or one client", "distinct_sources": "2"})
	if fs[0].Labels["address"] != "::" || fs[0].Labels["family"] != "ipv6" {
		t.Errorf("labels %v", fs[0].Labels)
	}
	// The same count without a minute of history: no baseline, no finding.
	if fs := SynRecvSurge(&cfg, build(30, time.Second, sample(29))); len(fs) != 0 {
		t.Errorf("without a baseline: %v", fs)
	}
	// A level that has held for most of the history is its own baseline.
	if fs := SynRecvSurge(&cfg, build(121, time.Second, sample(10))); len(fs) != 0 {
		t.Errorf("steady level: %v", fs)
	}
}

func TestSynRecvSurgeQuietCases(t *testing.T) {
	cfg := DefaultConfig()
	// A tiny backlog with a handshake in flight is "full" but not a surge.
	h := build(3, time.Second, func(i int, s *Summary) {
		s.Listeners = []Listener{lst(web, 1, 0, 1)}
	})
	if fs := SynRecvSurge(&cfg, h); len(fs) != 0 {
		t.Errorf("tiny backlog: %v", fs)
	}
	// A few cookies per second stay below the rate threshold.
	h = build(3, time.Second, func(i int, s *Summary) {
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldSyncookiesSent: uint64(2 * i)})
	})
	if fs := SynRecvSurge(&cfg, h); len(fs) != 0 {
		t.Errorf("2 cookies/s: %v", fs)
	}
}

func TestSynRecvSurgeNamespaceWide(t *testing.T) {
	cfg := DefaultConfig()
	// tcp_syncookies=2: every SYN gets a cookie, no request sockets.
	h := build(3, time.Second, func(i int, s *Summary) {
		s.Sysctls.TCPSyncookies = 2
		s.Listeners = []Listener{lst(web, 3, 0, 4096)}
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldSyncookiesSent: uint64(5000 * i)})
	})
	fs := SynRecvSurge(&cfg, h)
	if len(fs) != 1 || fs[0].Labels["reason"] != "syn_flood" || fs[0].Value != 5000 {
		t.Fatalf("namespace-wide flood: %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"busiest_listener": "10.0.0.1:443", "cookies_per_second": "5000"})
}

func TestAcceptQueueOverflow(t *testing.T) {
	cfg := DefaultConfig()
	h := build(3, time.Second, func(i int, s *Summary) {
		s.Listeners = []Listener{lst(web, 0, 9, 8)}
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldListenOverflows: uint64(4 * i), procnet.FieldListenDrops: uint64(4 * i)})
	})
	fs := AcceptQueueOverflow(&cfg, h)
	if len(fs) != 1 || fs[0].Labels["port"] != "443" || fs[0].Value != 9.0/8 {
		t.Fatalf("full queue: %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"queue_length": "9", "queue_limit": "8", "overflows_per_second": "4", "listen_drops_per_second": "4"})

	// Half full while overflows rise: named.
	h = build(3, time.Second, func(i int, s *Summary) {
		s.Listeners = []Listener{lst(web, 0, 70, 128)}
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldListenOverflows: uint64(10 * i)})
	})
	if fs := AcceptQueueOverflow(&cfg, h); len(fs) != 1 || fs[0].Labels["port"] != "443" {
		t.Errorf("half full and overflowing: %v", fs)
	}
	// Overflows with every queue empty in the sample: namespace-wide.
	h = build(3, time.Second, func(i int, s *Summary) {
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldListenOverflows: uint64(10 * i)})
	})
	if fs := AcceptQueueOverflow(&cfg, h); len(fs) != 1 || fs[0].Labels["reason"] != "listen_overflows" || fs[0].Value != 10 {
		t.Errorf("namespace-wide overflows: %v", fs)
	}
	// A busy but keeping-up listener, and drops alone (SYN-queue drops count
	// in ListenDrops too): quiet.
	h = build(3, time.Second, func(i int, s *Summary) {
		s.Listeners = []Listener{lst(web, 0, 40, 128)}
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldListenDrops: uint64(100 * i)})
	})
	if fs := AcceptQueueOverflow(&cfg, h); len(fs) != 0 {
		t.Errorf("keeping up: %v", fs)
	}
	// Cleared: the queue drained and the counter stopped.
	h = build(4, time.Second, func(i int, s *Summary) {
		if i < 2 {
			s.Listeners = []Listener{lst(web, 0, 9, 8)}
		}
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldListenOverflows: uint64(4 * min(i, 2))})
	})
	if fs := AcceptQueueOverflow(&cfg, h); len(fs) != 0 {
		t.Errorf("drained: %v", fs)
	}
}

func cw(port, cmd string, count, old uint64, oldest time.Duration) CloseWaitGroup {
	return CloseWaitGroup{Port: port, Command: cmd, PIDs: []int{4242}, Count: count, Old: old, Oldest: oldest}
}

func TestCloseWaitLeakOldSockets(t *testing.T) {
	cfg := DefaultConfig()
	h := build(3, time.Second, func(i int, s *Summary) {
		s.CloseWait = []CloseWaitGroup{cw("8080", "java", 25, 12, 95*time.Second), cw("9090", "nginx", 40, 3, 70*time.Second)}
	})
	fs := CloseWaitLeak(&cfg, h)
	if len(fs) != 1 || fs[0].Labels["port"] != "8080" || fs[0].Labels["command"] != "java" || fs[0].Value != 12 {
		t.Fatalf("old sockets: %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"sockets": "25", "old_sockets": "12", "oldest_age": "1m35s", "pids": "4242", "reasons": "old_sockets"})
	// Cleared: the application closed them.
	h.Push(Summary{Time: t0.Add(3 * time.Second)})
	if fs := CloseWaitLeak(&cfg, h); len(fs) != 0 {
		t.Errorf("after close: %v", fs)
	}
}

func TestCloseWaitLeakGrowth(t *testing.T) {
	cfg := DefaultConfig()
	// 12 minutes, one sample every 10 s: a group whose sockets are all
	// younger than the minimum age but whose count climbs by 2 per sample.
	growing := build(73, 10*time.Second, func(i int, s *Summary) {
		s.CloseWait = []CloseWaitGroup{cw("5432", "worker", uint64(10+2*i), 0, 50*time.Second)}
	})
	fs := CloseWaitLeak(&cfg, growing)
	if len(fs) != 1 || !strings.Contains(fs[0].Evidence["reasons"], "growing") {
		t.Fatalf("growing: %v", fs)
	}
	if g := fs[0].Evidence["growth"]; g != "120" {
		t.Errorf("growth %s, want 120 (60 samples of +2 in the 10m window)", g)
	}
	// Large but flat, and up-and-down: quiet.
	flat := build(73, 10*time.Second, func(i int, s *Summary) {
		s.CloseWait = []CloseWaitGroup{cw("5432", "worker", 300, 0, 50*time.Second)}
	})
	if fs := CloseWaitLeak(&cfg, flat); len(fs) != 0 {
		t.Errorf("flat: %v", fs)
	}
	wave := build(73, 10*time.Second, func(i int, s *Summary) {
		n := uint64(10 + 3*i)
		if i > 40 && i < 55 {
			n = 20
		}
		s.CloseWait = []CloseWaitGroup{cw("5432", "worker", n, 0, 50*time.Second)}
	})
	if fs := CloseWaitLeak(&cfg, wave); len(fs) != 0 {
		t.Errorf("dip in the third quarter: %v", fs)
	}
	// Too little history to judge growth.
	short := build(20, 10*time.Second, func(i int, s *Summary) {
		s.CloseWait = []CloseWaitGroup{cw("5432", "worker", uint64(10+20*i), 0, 50*time.Second)}
	})
	if fs := CloseWaitLeak(&cfg, short); len(fs) != 0 {
		t.Errorf("short history: %v", fs)
	}
}

func dst(local, remote string, port uint16, used, tw uint64) Destination {
	return Destination{DestinationKey: DestinationKey{Family: diag.AFInet, Local: netip.MustParseAddr(local),
		Remote: netip.MustParseAddr(remote), RemotePort: port}, Used: used, TimeWait: tw}
}

func TestTimeWaitExhaustionPorts(t *testing.T) {
	cfg := DefaultConfig()
	with := func(reuse int64, ds ...Destination) *History {
		return build(2, time.Second, func(i int, s *Summary) {
			s.Sysctls.TCPTWReuse = reuse
			s.Destinations, s.DestinationsTime = ds, s.Time
		})
	}
	fs := TimeWaitExhaustion(&cfg, with(0, dst("10.0.0.2", "10.0.0.9", 5432, 850, 800), dst("10.0.0.2", "10.0.0.8", 80, 10, 0)))
	if len(fs) != 1 || fs[0].Severity != Warning || fs[0].Value != 0.85 {
		t.Fatalf("85%%: %v", fs)
	}
	f := &fs[0]
	if f.Labels["reason"] != "local_ports" || f.Labels["remote_address"] != "10.0.0.9" || f.Labels["remote_port"] != "5432" || f.Labels["local_address"] != "10.0.0.2" {
		t.Errorf("labels %v", f.Labels)
	}
	checkEvidence(t, f, map[string]string{"used": "850", "usable": "1000", "time_wait": "800", "time_wait_share": "0.94", "destination": "10.0.0.2 -> 10.0.0.9:5432"})

	fs = TimeWaitExhaustion(&cfg, with(0, dst("10.0.0.2", "10.0.0.9", 5432, 960, 900)))
	if len(fs) != 2 || find(fs, AlertTimeWaitExhaustion, Critical) == nil || find(fs, AlertTimeWaitExhaustion, Warning) == nil {
		t.Errorf("96%%: want warning and critical, got %v", fs)
	}
	// tcp_tw_reuse=2 lets loopback connects reuse TIME_WAIT ports, not others.
	if fs := TimeWaitExhaustion(&cfg, with(2, dst("127.0.0.1", "127.0.0.1", 9000, 900, 880))); len(fs) != 0 {
		t.Errorf("loopback with tw_reuse=2: %v", fs)
	}
	if fs := TimeWaitExhaustion(&cfg, with(2, dst("10.0.0.2", "10.0.0.9", 9000, 900, 880))); len(fs) != 1 {
		t.Errorf("non-loopback with tw_reuse=2: %v", fs)
	}
	if fs := TimeWaitExhaustion(&cfg, with(1, dst("10.0.0.2", "10.0.0.9", 9000, 900, 880))); len(fs) != 0 {
		t.Errorf("tw_reuse=1: %v", fs)
	}
	// Reserved ports shrink the usable range: 860 of 900 usable.
	h := build(2, time.Second, func(i int, s *Summary) {
		s.Sysctls.TCPTWReuse = 0
		s.Sysctls.ReservedPorts = []procnet.PortRange{{Low: 40000, High: 40099}}
		s.Destinations, s.DestinationsTime = []Destination{dst("10.0.0.2", "10.0.0.9", 80, 860, 0)}, s.Time
	})
	if fs := TimeWaitExhaustion(&cfg, h); len(fs) != 2 || fs[0].Evidence["usable"] != "900" {
		t.Errorf("reserved ports: %v", fs)
	}
	// Destinations from a full sample older than StaleAfter are ignored.
	h = build(2, time.Second, func(i int, s *Summary) {
		s.Sysctls.TCPTWReuse = 0
		s.Destinations, s.DestinationsTime = []Destination{dst("10.0.0.2", "10.0.0.9", 80, 990, 0)}, s.Time.Add(-10*time.Minute)
	})
	if fs := TimeWaitExhaustion(&cfg, h); len(fs) != 0 {
		t.Errorf("stale destinations: %v", fs)
	}
	// Cleared: the TIME_WAIT sockets expired.
	if fs := TimeWaitExhaustion(&cfg, with(0, dst("10.0.0.2", "10.0.0.9", 5432, 100, 50))); len(fs) != 0 {
		t.Errorf("after expiry: %v", fs)
	}
}

func TestTimeWaitExhaustionBuckets(t *testing.T) {
	cfg := DefaultConfig()
	tw := func(n int64, overflow func(i int) uint64) *History {
		return build(3, time.Second, func(i int, s *Summary) {
			s.Sockstat.TCPTimeWait = n
			s.Sockstat.Present = s.Sockstat.Present.Add(procnet.SockstatTCPTimeWait)
			s.Counters = counters(map[procnet.Field]uint64{procnet.FieldTCPTimeWaitOverflow: overflow(i)})
		})
	}
	none := func(int) uint64 { return 0 }
	fs := TimeWaitExhaustion(&cfg, tw(950, none))
	if len(fs) != 1 || fs[0].Labels["reason"] != "tw_buckets" || fs[0].Value != 0.95 {
		t.Fatalf("950 of 1000 buckets: %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"time_wait": "950", "tcp_max_tw_buckets": "1000"})
	fs = TimeWaitExhaustion(&cfg, tw(1000, func(i int) uint64 { return uint64(30 * i) }))
	if len(fs) != 1 || fs[0].Evidence["time_wait_overflows_per_second"] != "30" {
		t.Errorf("overflowing: %v", fs)
	}
	if fs := TimeWaitExhaustion(&cfg, tw(500, none)); len(fs) != 0 {
		t.Errorf("half full: %v", fs)
	}
}

func TestResetStorm(t *testing.T) {
	cfg := DefaultConfig()
	// 5 minutes at 2 resets/s, then 200/s from stormAt until stormEnd.
	gen := func(stormAt, stormEnd int) func(int, *Summary) {
		return func(i int, s *Summary) {
			var v uint64
			for j := 1; j <= i; j++ {
				if j > stormAt && j <= stormEnd {
					v += 200
				} else {
					v += 2
				}
			}
			s.Counters = counters(map[procnet.Field]uint64{procnet.FieldOutRsts: v, procnet.FieldEstabResets: uint64(i)})
		}
	}
	fs := ResetStorm(&cfg, build(305, time.Second, gen(300, 1000)))
	if len(fs) != 1 || fs[0].Labels["counter"] != "out_rsts" || fs[0].For != 30*time.Second {
		t.Fatalf("storm: %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"baseline_rate": "2", "rate": "81.2", "recent_window": "10s"})
	// Calm throughout, and a storm that ended more than ResetRecent ago.
	if fs := ResetStorm(&cfg, build(305, time.Second, gen(1000, 1000))); len(fs) != 0 {
		t.Errorf("calm: %v", fs)
	}
	if fs := ResetStorm(&cfg, build(330, time.Second, gen(300, 310))); len(fs) != 0 {
		t.Errorf("after the storm: %v", fs)
	}
	// No baseline yet.
	if fs := ResetStorm(&cfg, build(40, time.Second, gen(35, 1000))); len(fs) != 0 {
		t.Errorf("no baseline: %v", fs)
	}
	// A high rate that is also the usual one.
	busy := build(305, time.Second, func(i int, s *Summary) {
		s.Counters = counters(map[procnet.Field]uint64{procnet.FieldOutRsts: uint64(300 * i)})
	})
	if fs := ResetStorm(&cfg, busy); len(fs) != 0 {
		t.Errorf("usual rate: %v", fs)
	}
}

func TestOrphanPressure(t *testing.T) {
	cfg := DefaultConfig()
	with := func(orphans int64, present bool) *History {
		return build(1, time.Second, func(i int, s *Summary) {
			s.Sockstat.TCPOrphan = orphans
			s.Sockstat.Present = s.Sockstat.Present.Add(procnet.SockstatTCPOrphan)
			if !present {
				s.Sysctls.Present = 0
			}
		})
	}
	if fs := OrphanPressure(&cfg, with(600, true)); len(fs) != 1 || fs[0].Severity != Warning || fs[0].Value != 0.6 {
		t.Errorf("60%%: %v", fs)
	}
	fs := OrphanPressure(&cfg, with(900, true))
	if len(fs) != 2 || find(fs, AlertOrphanPressure, Critical) == nil {
		t.Errorf("90%%: %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"orphans": "900", "tcp_max_orphans": "1000"})
	if fs := OrphanPressure(&cfg, with(100, true)); len(fs) != 0 {
		t.Errorf("10%%: %v", fs)
	}
	if fs := OrphanPressure(&cfg, with(900, false)); len(fs) != 0 {
		t.Errorf("without tcp_max_orphans (a pod namespace): %v", fs)
	}
}

func TestEvaluateAll(t *testing.T) {
	d := mustDetectors(t)
	if fs := d.Evaluate(NewHistory(time.Minute, 10)); fs != nil {
		t.Errorf("empty history: %v", fs)
	}
	h := build(3, time.Second, func(i int, s *Summary) {
		s.Listeners = []Listener{lst(web, 129, 9, 8)}
		s.CloseWait = []CloseWaitGroup{cw("80", "httpd", 20, 20, 2*time.Minute)}
		s.Sockstat.TCPOrphan = 700
		s.Sockstat.Present = s.Sockstat.Present.Add(procnet.SockstatTCPOrphan)
	})
	got := map[string]int{}
	for _, f := range d.Evaluate(h) {
		got[f.Alert]++
		if f.Labels == nil || f.Evidence == nil {
			t.Errorf("%s: nil labels or evidence", f.Alert)
		}
	}
	want := map[string]int{AlertSynRecvSurge: 1, AlertAcceptQueueOverflow: 1, AlertCloseWaitLeak: 1, AlertOrphanPressure: 1}
	if len(got) != len(want) {
		t.Errorf("findings %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("findings %v, want %v", got, want)
		}
	}
}

func TestHistoryRing(t *testing.T) {
	h := NewHistory(10*time.Second, 4)
	if h.Latest() != nil || h.At(0) != nil {
		t.Fatal("empty history returned a summary")
	}
	for i := range 6 {
		h.Push(Summary{Time: t0.Add(time.Duration(i) * time.Second)})
	}
	if h.Len() != 4 || !h.At(0).Time.Equal(t0.Add(2*time.Second)) || !h.Latest().Time.Equal(t0.Add(5*time.Second)) {
		t.Errorf("ring of 4 after 6 pushes: len %d oldest %v", h.Len(), h.At(0).Time)
	}
	h.Push(Summary{Time: t0}) // out of order: ignored
	if h.Len() != 4 || !h.Latest().Time.Equal(t0.Add(5*time.Second)) {
		t.Errorf("out-of-order push changed the history")
	}
	h.Push(Summary{Time: t0.Add(14 * time.Second)}) // 3,4,5 are now too old... 4 and 5 stay
	if h.Len() != 3 || !h.At(0).Time.Equal(t0.Add(4*time.Second)) {
		t.Errorf("max age: len %d oldest %v", h.Len(), h.At(0).Time)
	}
	if i := h.indexAtOrBefore(t0.Add(13 * time.Second)); i != 1 {
		t.Errorf("indexAtOrBefore = %d, want 1", i)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"ports ratio":  func(c *Config) { c.PortsRatio = 1.5 },
		"threshold":    func(c *Config) { c.CloseWaitThreshold = 0 },
		"history":      func(c *Config) { c.History = 0 },
		"factor":       func(c *Config) { c.ResetFactor = 0.5 },
		"negative for": func(c *Config) { c.OrphanFor = -time.Second },
		"cookie rate":  func(c *Config) { c.CookieRate = -1 },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted an invalid config", name)
		}
	}
}
