package detect

import (
	"strings"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

func keepaliveSysctls() procnet.Sysctls {
	s := baseSysctls()
	s.TCPKeepaliveTime, s.TCPKeepaliveIntvl, s.TCPKeepaliveProbes = 7200, 75, 9
	s.Present = s.Present.Add(procnet.SysctlTCPKeepaliveTime).Add(procnet.SysctlTCPKeepaliveIntvl).Add(procnet.SysctlTCPKeepaliveProbes)
	return s
}

// TestHalfOpenSuspectThreshold checks the count edge: one below
// HalfOpenMinCount is quiet, at it fires, per port and command, with the
// listener, the process, the keepalive sysctls and the fix as evidence.
func TestHalfOpenSuspectThreshold(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HalfOpenMinCount = 5
	for _, tc := range []struct {
		count uint64
		fire  bool
	}{{0, false}, {4, false}, {5, true}, {500, true}} {
		h := build(1, time.Second, func(i int, s *Summary) {
			s.Sysctls = keepaliveSysctls()
			s.HalfOpenTime = s.Time.Add(-20 * time.Second)
			s.HalfOpen = []HalfOpenGroup{{
				Port: "8080", Listeners: []string{"0.0.0.0:8080"}, Command: "server", PIDs: []int{42, 43},
				Count: tc.count, OldestIdle: 3 * time.Hour, Remotes: []string{"10.0.0.2", "10.0.0.3"},
			}}
		})
		fs := HalfOpenSuspect(&cfg, h)
		if tc.fire != (len(fs) == 1) || len(fs) > 1 {
			t.Errorf("count %d: %d findings, want firing %v", tc.count, len(fs), tc.fire)
			continue
		}
		if !tc.fire {
			continue
		}
		f := &fs[0]
		checkEvidence(t, f, map[string]string{
			"port": "8080", "listeners": "0.0.0.0:8080", "command": "server", "pids": "42,43",
			"connections": fmtUint(tc.count), "oldest_idle": "3h0m0s", "min_idle": "15m0s",
			"remotes": "10.0.0.2,10.0.0.3", "sweep_age": "20s",
			"tcp_keepalive_time": "7200", "tcp_keepalive_intvl": "75", "tcp_keepalive_probes": "9",
			"keepalive_detects_after": "2h11m15s",
		})
		if f.Alert != AlertHalfOpenSuspect || f.Severity != Warning || f.Value != float64(tc.count) ||
			f.Labels["port"] != "8080" || f.Labels["command"] != "server" {
			t.Errorf("finding %+v", f)
		}
		for _, want := range []string{"SO_KEEPALIVE", "TCP_KEEPIDLE", "heartbeat"} {
			if !strings.Contains(f.Evidence["fix"], want) || !strings.Contains(f.Description, want) {
				t.Errorf("fix does not mention %s: %q", want, f.Evidence["fix"])
			}
		}
		if !strings.Contains(f.Summary, "0.0.0.0:8080") || !strings.Contains(f.Summary, "server") {
			t.Errorf("summary does not name the listener and process: %q", f.Summary)
		}
	}
}

// TestHalfOpenSuspectGroups checks that groups are judged one by one, that
// an unknown owner and outbound connections are worded as such, that
// missing keepalive sysctls are left out of the evidence, and that a
// history without sweeps is quiet.
func TestHalfOpenSuspectGroups(t *testing.T) {
	cfg := DefaultConfig()
	h := build(1, time.Second, func(i int, s *Summary) {
		s.HalfOpenTime = s.Time
		s.HalfOpen = []HalfOpenGroup{
			{Port: "ephemeral", Count: 12, OldestIdle: time.Hour},
			{Port: "9000", Listeners: []string{"[::]:9000"}, Command: "db", Count: 9, OldestIdle: time.Hour},
		}
	})
	fs := HalfOpenSuspect(&cfg, h)
	if len(fs) != 1 {
		t.Fatalf("%d findings, want 1: %+v", len(fs), fs)
	}
	f := &fs[0]
	if f.Labels["port"] != "ephemeral" || f.Labels["command"] != "" ||
		!strings.Contains(f.Summary, "an unknown process on outbound connections") {
		t.Errorf("finding %+v", f)
	}
	if _, ok := f.Evidence["tcp_keepalive_time"]; ok {
		t.Errorf("keepalive evidence without the sysctls: %v", f.Evidence)
	}
	if fs := HalfOpenSuspect(&cfg, build(3, time.Second, func(int, *Summary) {})); fs != nil {
		t.Errorf("no sweep: %v", fs)
	}
	d := mustDetectors(t)
	if n := len(d.Evaluate(h)); n != 1 {
		t.Errorf("Evaluate: %d findings, want the half-open one", n)
	}
}

// TestHalfOpenConfigValidate checks the half-open thresholds' bounds.
func TestHalfOpenConfigValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"min idle":  func(c *Config) { c.HalfOpenMinIdle = 0 },
		"min count": func(c *Config) { c.HalfOpenMinCount = 0 },
		"for":       func(c *Config) { c.HalfOpenFor = -time.Second },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: invalid config accepted", name)
		}
	}
}
