//go:build linux

package netns

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// processCPU returns this process's user and system time.
func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tcpAlloc returns the TCP sockets allocated on the whole node (sockstat
// "alloc" is global), which is what every dump's hash walk covers.
func tcpAlloc() string {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return "?"
	}
	var inuse, orphan, tw, alloc int
	for _, line := range strings.Split(string(b), "\n") {
		if n, _ := fmt.Sscanf(line, "TCP: inuse %d orphan %d tw %d alloc %d", &inuse, &orphan, &tw, &alloc); n == 4 {
			return strconv.Itoa(alloc)
		}
	}
	return "?"
}

// dumpStats is the cost of one dump.
type dumpStats struct {
	sockets   int
	cpu, wall time.Duration
}

func dumpOnce(t testing.TB, c *diag.Conn, kind collector.Kind) dumpStats {
	t.Helper()
	n := 0
	st, err := c.Dump(diag.Request{States: kind.Mask()}, func(*diag.Socket) error { n++; return nil })
	if err != nil {
		t.Fatalf("%v dump: %v", kind, err)
	}
	return dumpStats{sockets: n, cpu: st.CPU, wall: st.Wall}
}

// BenchmarkSweepCost measures what --netns=all costs: a sweep of full or
// rare dumps over 50 namespaces holding about 100k sockets in all
// (sweep/full, sweep/rare; CPU and wall per sweep, CPU of one namespace's
// dump), a Manager held to a 5% budget over those namespaces (manager:
// process CPU as a share of a core over a 60 s window after a 30 s warm-up,
// once per iteration), and one dump of the same number of sockets in a
// single namespace (single/full, single/rare). Every dump's socket count is
// checked. It builds about 100k sockets, so hold the machine-wide lock:
//
//	flock /tmp/bench.lock go test ./collector/netns -run '^$' -bench SweepCost -benchtime 5x -timeout 20m
func BenchmarkSweepCost(b *testing.B) {
	const (
		nsCount   = 50
		pairsPer  = 1000 // 2000 ESTABLISHED + 1 LISTEN per namespace
		perHelper = 9    // namespaces per helper: 9 × 2001 descriptors
	)
	own, err := statKey("/proc/self/ns/net")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("TCP sockets allocated on the node before: %s", tcpAlloc())

	// 50 namespaces.
	built := time.Now()
	var handles []*Handle
	var nss []*fixture.Netns
	var helpers []*helper
	var batch []sockSpec
	for i := range nsCount {
		ns := newNamedNetns(b)
		nss = append(nss, ns)
		path := "/run/netns/" + ns.Name()
		batch = append(batch, sockSpec{Path: path, Pairs: pairsPer})
		if len(batch) == perHelper || i == nsCount-1 {
			helpers = append(helpers, startHelper(b, "", batch...))
			batch = nil
		}
		h, err := Open(Namespace{Key: Key{Dev: own.Dev, Inode: inodeOf(b, path)}, Path: path}, "/proc")
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		handles = append(handles, h)
	}
	b.Logf("built %d namespaces × %d sockets in %v; TCP sockets allocated on the node: %s",
		nsCount, 2*pairsPer+1, time.Since(built).Round(time.Millisecond), tcpAlloc())
	conns := make([]*diag.Conn, len(handles))
	for i, h := range handles {
		c, err := h.Dial()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for _, kind := range collector.Kinds {
		if kind == collector.HalfOpen {
			// Not a plain dump: the sweep's cost is diagbench's
			// halfopen mode.
			continue
		}
		b.Run("sweep/"+kind.String(), func(b *testing.B) {
			want := 2*pairsPer + 1
			if kind == collector.Rare {
				want = 1
			}
			var cpu, wall time.Duration
			var one []time.Duration
			for b.Loop() {
				for i, c := range conns {
					d := dumpOnce(b, c, kind)
					if d.sockets != want {
						b.Fatalf("%s: %v dump saw %d sockets, want %d", nss[i].Name(), kind, d.sockets, want)
					}
					cpu += d.cpu
					wall += d.wall
					one = append(one, d.cpu)
				}
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/sweep")
			b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s/sweep")
			b.ReportMetric(median(one).Seconds(), "cpu-s/ns-dump(median)")
		})
	}

	// The Manager over these namespaces at the default 5% budget.
	b.Run("manager", func(b *testing.B) {
		for b.Loop() {
			rec := &fixture.LogRecorder{}
			m, err := NewManager(ManagerOptions{
				Refresh: 30 * time.Second, Interval: time.Second, CPUBudget: 0.05, Logger: slog.New(rec),
				NewSampler: func(h *Handle) (*collector.Sampler, error) {
					return collector.NewSampler(collector.SamplerOptions{Dial: h.Dial, InNetns: h.Do, Logger: slog.New(rec)}), nil
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			bg := fixture.Background(b, "Manager.Run", m.Run)
			// Let the first sweep (all full, paced) run, then measure a
			// steady window.
			time.Sleep(30 * time.Second)
			p0, w0 := processCPU(), time.Now()
			time.Sleep(60 * time.Second)
			used, wall := processCPU()-p0, time.Since(w0)
			st := m.Stats()
			bg.Stop(fixture.DefaultStopGrace)
			if st.Namespaces < nsCount {
				b.Fatalf("Manager sampled %d namespaces, want at least %d", st.Namespaces, nsCount)
			}
			if r := rec.Records(); len(r) > 0 {
				b.Errorf("warnings or errors logged: %q", r)
			}
			b.ReportMetric(100*used.Seconds()/wall.Seconds(), "%core")
			b.ReportMetric(st.SweepCPU.Seconds(), "cpu-s/latest-sweep")
			b.ReportMetric(st.FullEvery.Seconds(), "s/full-interval")
		}
	})

	// The same number of sockets in one namespace.
	for _, h := range helpers {
		h.stop()
	}
	for _, c := range conns {
		c.Close()
	}
	for _, h := range handles {
		h.Close()
	}
	for _, ns := range nss {
		if err := ns.Delete(); err != nil {
			b.Error(err)
		}
	}
	path := "/run/netns/" + newNamedNetns(b).Name()
	const single = nsCount * pairsPer // pairs
	per := single / 6
	for i := range 6 {
		n := per
		if i == 5 {
			n = single - 5*per
		}
		startHelper(b, "", sockSpec{Path: path, Pairs: n})
	}
	b.Logf("one namespace with %d sockets; TCP sockets allocated on the node: %s", 2*single+6, tcpAlloc())
	h, err := Open(Namespace{Key: Key{Dev: own.Dev, Inode: inodeOf(b, path)}, Path: path}, "/proc")
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	c, err := h.Dial()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, kind := range collector.Kinds {
		if kind == collector.HalfOpen {
			// Not a plain dump: the sweep's cost is diagbench's
			// halfopen mode.
			continue
		}
		b.Run("single/"+kind.String(), func(b *testing.B) {
			want := 2*single + 6
			if kind == collector.Rare {
				want = 6
			}
			var cpu, wall time.Duration
			for b.Loop() {
				d := dumpOnce(b, c, kind)
				if d.sockets != want {
					b.Fatalf("single namespace: %v dump saw %d sockets, want %d", kind, d.sockets, want)
				}
				cpu += d.cpu
				wall += d.wall
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/dump")
			b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s/dump")
		})
	}
}

// median returns the median of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
