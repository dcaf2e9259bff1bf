package detect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// portsHistory returns n one-second summaries of one destination whose
// used ports are used(i), with the given port range and tcp_tw_reuse 0.
func portsHistory(n int, low, high uint16, used func(i int) uint64) *History {
	return build(n, time.Second, func(i int, s *Summary) {
		s.Sysctls.TCPTWReuse = 0
		s.Sysctls.PortRange = procnet.PortRange{Low: low, High: high}
		if u := used(i); u > 0 {
			s.Destinations = []Destination{dst("10.0.0.2", "10.0.0.9", 5432, u, u/2)}
		}
		s.DestinationsTime = s.Time
	})
}

func TestTimeWaitExhaustionForecast(t *testing.T) {
	linear := func(base, perSec uint64) func(int) uint64 {
		return func(i int) uint64 { return base + perSec*uint64(i) }
	}
	for _, tc := range []struct {
		name      string
		h         *History
		horizon   time.Duration
		window    time.Duration
		want      bool
		rate, eta string
	}{
		// 1000 usable ports, 50 more a second, 300 used: 700 left, 14 s.
		{name: "fast churn, small range", h: portsHistory(7, 40000, 40999, linear(0, 50)), want: true, rate: "50", eta: "14"},
		// 5 a second against 28232 ports: hours away.
		{name: "slow churn, default range", h: portsHistory(30, 32768, 60999, linear(0, 5))},
		// The horizon's edge: 600 left at 10 a second is 60 s.
		{name: "at the horizon", h: portsHistory(5, 40000, 40999, linear(360, 10)), want: true, rate: "10", eta: "60"},
		{name: "past the horizon", h: portsHistory(5, 40000, 40999, linear(350, 10))},
		{name: "horizon 0 turns it off", h: portsHistory(7, 40000, 40999, linear(0, 50)), horizon: -1},
		{name: "one sample", h: portsHistory(1, 40000, 40999, linear(300, 0))},
		{name: "shrinking", h: portsHistory(5, 40000, 40999, func(i int) uint64 { return 600 - 50*uint64(i) })},
		// A burst 20 s ago is outside a 10 s window; steady since.
		{name: "old burst", h: portsHistory(30, 40000, 40999, func(i int) uint64 { return min(50*uint64(i), 500) })},
		// The window sets the span: over 4 s, 40 more a second; 740 left.
		{name: "short window", h: portsHistory(20, 40000, 40999, func(i int) uint64 { return 100 + 40*uint64(max(i-15, 0)) }), window: 4 * time.Second, want: true, rate: "40", eta: "18.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			switch {
			case tc.horizon < 0:
				cfg.ForecastHorizon = 0
			case tc.horizon > 0:
				cfg.ForecastHorizon = tc.horizon
			}
			if tc.window > 0 {
				cfg.ForecastWindow = tc.window
			}
			fs := TimeWaitExhaustion(&cfg, tc.h)
			if !tc.want {
				if len(fs) != 0 {
					t.Fatalf("want no finding, got %v", fs)
				}
				return
			}
			if len(fs) != 1 || fs[0].Severity != Warning || fs[0].Labels["reason"] != "local_ports" {
				t.Fatalf("want one local_ports warning, got %v", fs)
			}
			checkEvidence(t, &fs[0], map[string]string{"trigger": "forecast", "ports_per_second": tc.rate, "seconds_to_exhaustion": tc.eta, "usable": "1000"})
		})
	}
}

func TestTimeWaitExhaustionForecastTruncated(t *testing.T) {
	cfg := DefaultConfig()
	// The destination was absent from a cut-short list whose least used
	// entry held 200: it grew from at most 200, not from 0.
	h := build(3, time.Second, func(i int, s *Summary) {
		s.Sysctls.TCPTWReuse = 0
		s.DestinationsTime = s.Time
		if i == 0 {
			s.Destinations = []Destination{dst("10.0.0.2", "10.0.0.8", 80, 300, 0), dst("10.0.0.2", "10.0.0.7", 80, 200, 0)}
			s.DestinationsTruncated = true
			return
		}
		s.Destinations = []Destination{dst("10.0.0.2", "10.0.0.9", 5432, 300, 0)}
	})
	fs := TimeWaitExhaustion(&cfg, h)
	if len(fs) != 1 {
		t.Fatalf("want one finding, got %v", fs)
	}
	// (300-200)/2 s = 50/s; 700 left: 14 s. From 0 it would be 150/s.
	checkEvidence(t, &fs[0], map[string]string{"ports_per_second": "50", "seconds_to_exhaustion": "14"})
}

func TestTimeWaitExhaustionShareCarriesForecast(t *testing.T) {
	cfg := DefaultConfig()
	fs := TimeWaitExhaustion(&cfg, portsHistory(3, 40000, 40999, func(i int) uint64 { return 800 + 50*uint64(i) }))
	if len(fs) != 1 {
		t.Fatalf("want one warning at 90%%, got %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"trigger": "share", "ports_per_second": "50", "seconds_to_exhaustion": "2"})
}

func TestTimeWaitBucketsForecast(t *testing.T) {
	cfg := DefaultConfig()
	h := build(4, time.Second, func(i int, s *Summary) {
		s.Sockstat.TCPTimeWait = int64(100 + 20*i)
		s.Sockstat.Present = s.Sockstat.Present.Add(procnet.SockstatTCPTimeWait)
	})
	// 160 of 1000 buckets, 20 more a second: 42 s.
	fs := TimeWaitExhaustion(&cfg, h)
	if len(fs) != 1 || fs[0].Labels["reason"] != "tw_buckets" {
		t.Fatalf("want a tw_buckets forecast, got %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"time_wait_per_second": "20", "seconds_to_exhaustion": "42"})
	cfg.ForecastHorizon = 30 * time.Second
	if fs := TimeWaitExhaustion(&cfg, h); len(fs) != 0 {
		t.Errorf("42 s away with a 30 s horizon: %v", fs)
	}
}

func TestOrphanPressureForecast(t *testing.T) {
	cfg := DefaultConfig()
	h := build(3, time.Second, func(i int, s *Summary) {
		s.Sockstat.TCPOrphan = int64(100 + 100*i)
		s.Sockstat.Present = s.Sockstat.Present.Add(procnet.SockstatTCPOrphan)
	})
	// 300 of 1000, 100 more a second: 7 s; a warning, not critical.
	fs := OrphanPressure(&cfg, h)
	if len(fs) != 1 || fs[0].Severity != Warning {
		t.Fatalf("want one forecast warning, got %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"trigger": "forecast", "orphans_per_second": "100", "seconds_to_exhaustion": "7"})
	steady := build(3, time.Second, func(i int, s *Summary) {
		s.Sockstat.TCPOrphan = 300
		s.Sockstat.Present = s.Sockstat.Present.Add(procnet.SockstatTCPOrphan)
	})
	if fs := OrphanPressure(&cfg, steady); len(fs) != 0 {
		t.Errorf("steady orphans: %v", fs)
	}
}

func TestProjectEdges(t *testing.T) {
	for _, tc := range []struct {
		old, cur, limit float64
		span            time.Duration
		ok              bool
		eta             time.Duration
	}{
		{0, 100, 1000, time.Second, true, 9 * time.Second},
		{0, 100, 1000, 400 * time.Millisecond, false, 0}, // too short a span
		{100, 100, 1000, time.Second, false, 0},          // no growth
		{0, 1200, 1000, time.Second, true, 0},            // past the limit
	} {
		f := project(tc.old, tc.cur, tc.limit, tc.span)
		if f.OK != tc.ok || f.ETA != tc.eta {
			t.Errorf("project(%v, %v, %v, %v) = %+v, want ok %v eta %v", tc.old, tc.cur, tc.limit, tc.span, f, tc.ok, tc.eta)
		}
	}
}

// BenchmarkTimeWaitExhaustionForecast evaluates the detector on a full
// history (10 minutes at one sample a second) whose samples each hold the
// most destinations a sample keeps (1000). "steady": ports grow by one a
// second, too slowly for any forecast, so none is looked up; "churning":
// they grow by 100 a second, the worst case, where each of the 16
// candidates is looked up among 1000 destinations of the window's start.
func BenchmarkTimeWaitExhaustionForecast(b *testing.B) {
	for _, bc := range []struct {
		name   string
		growth uint64
	}{{"steady", 1}, {"churning", 100}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			const n = 1000
			h := NewHistory(cfg.History, 602)
			for i := range 600 {
				s := Summary{Time: t0.Add(time.Duration(i) * time.Second), Sysctls: baseSysctls()}
				s.Sysctls.PortRange = procnet.PortRange{Low: 32768, High: 60999}
				s.Destinations = make([]Destination, n)
				for j := range s.Destinations {
					s.Destinations[j] = Destination{DestinationKey: DestinationKey{Family: 2, Local: netip.AddrFrom4([4]byte{10, 0, 0, 1}),
						Remote: netip.AddrFrom4([4]byte{10, 1, byte(j >> 8), byte(j)}), RemotePort: 443}, Used: uint64(n-j) + bc.growth*uint64(i%60)}
				}
				s.DestinationsTime = s.Time
				h.Push(s)
			}
			b.ReportAllocs()
			for b.Loop() {
				TimeWaitExhaustion(&cfg, h)
			}
		})
	}
}

// TestTimeWaitExhaustionForecastSparseFullDumps: on a busy node the budget
// spaces full dumps 30 s apart, further than the 10 s window; the forecast
// then measures over the span between the two latest full dumps.
func TestTimeWaitExhaustionForecastSparseFullDumps(t *testing.T) {
	cfg := DefaultConfig()
	h := build(61, time.Second, func(i int, s *Summary) {
		s.Sysctls.TCPTWReuse = 0
		full := i - i%30 // full dumps at 0, 30 and 60 s
		s.DestinationsTime = t0.Add(time.Duration(full) * time.Second)
		if u := uint64(5 * full); u > 0 {
			s.Destinations = []Destination{dst("10.0.0.2", "10.0.0.9", 5432, u, 0)}
		}
	})
	// 150 ports at 30 s, 300 at 60 s: 5 a second over 30 s; 700 left, 140 s.
	cfg.ForecastHorizon = 150 * time.Second
	fs := TimeWaitExhaustion(&cfg, h)
	if len(fs) != 1 {
		t.Fatalf("want one forecast from the two latest full dumps, got %v", fs)
	}
	checkEvidence(t, &fs[0], map[string]string{"trigger": "forecast", "ports_per_second": "5", "seconds_to_exhaustion": "140"})
}
