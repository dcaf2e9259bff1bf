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

// costEnv turns on TestSweepCost, which builds about 100k sockets.
const costEnv = "TSNS_COST"

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

func dumpOnce(t *testing.T, c *diag.Conn, kind collector.Kind) dumpStats {
	t.Helper()
	n := 0
	st, err := c.Dump(diag.Request{States: kind.Mask()}, func(*diag.Socket) error { n++; return nil })
	if err != nil {
		t.Fatalf("%v dump: %v", kind, err)
	}
	return dumpStats{sockets: n, cpu: st.CPU, wall: st.Wall}
}

// median returns the median of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestSweepCost measures what --netns=all costs: one sweep of full (and
// rare) dumps over 50 namespaces holding about 100k sockets in all, against
// one dump of the same number of sockets in a single namespace, then a
// Manager held to a 5% budget over the 50 namespaces. It prints numbers and
// asserts only that counts are exact; set TSNS_COST=1 to run it:
//
//	TSNS_COST=1 go test ./collector/netns -run TestSweepCost -v -timeout 20m
func TestSweepCost(t *testing.T) {
	if os.Getenv(costEnv) == "" {
		t.Skip("set " + costEnv + "=1 to build 100k sockets in 50 namespaces and measure the sweep")
	}
	const (
		nsCount   = 50
		pairsPer  = 1000 // 2000 ESTABLISHED + 1 LISTEN per namespace
		perHelper = 9    // namespaces per helper: 9 × 2001 descriptors
		rounds    = 5
	)
	own, err := statKey("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TCP sockets allocated on the node before: %s", tcpAlloc())

	// Phase 1: 50 namespaces.
	built := time.Now()
	var handles []*Handle
	var names []string
	var nss []*fixture.Netns
	var helpers []*helper
	var batch []sockSpec
	for i := range nsCount {
		ns := newNamedNetns(t)
		name := ns.Name()
		names = append(names, name)
		nss = append(nss, ns)
		path := "/run/netns/" + name
		batch = append(batch, sockSpec{Path: path, Pairs: pairsPer})
		if len(batch) == perHelper || i == nsCount-1 {
			helpers = append(helpers, startHelper(t, "", batch...))
			batch = nil
		}
		h, err := Open(Namespace{Key: Key{Dev: own.Dev, Inode: inodeOf(t, path)}, Path: path}, "/proc")
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		handles = append(handles, h)
	}
	t.Logf("built %d namespaces × %d sockets in %v; TCP sockets allocated on the node: %s",
		nsCount, 2*pairsPer+1, time.Since(built).Round(time.Millisecond), tcpAlloc())
	conns := make([]*diag.Conn, len(handles))
	for i, h := range handles {
		c, err := h.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for _, kind := range collector.Kinds {
		var sweepCPU, sweepWall, procCPU, oneCPU []time.Duration
		for range rounds {
			var cpu, wall time.Duration
			p0 := processCPU()
			for i, c := range conns {
				d := dumpOnce(t, c, kind)
				want := 2*pairsPer + 1
				if kind == collector.Rare {
					want = 1
				}
				if d.sockets != want {
					t.Errorf("%s: %v dump saw %d sockets, want %d", names[i], kind, d.sockets, want)
				}
				cpu += d.cpu
				wall += d.wall
				oneCPU = append(oneCPU, d.cpu)
			}
			procCPU = append(procCPU, processCPU()-p0)
			sweepCPU = append(sweepCPU, cpu)
			sweepWall = append(sweepWall, wall)
		}
		t.Logf("50 namespaces, %v sweep: CPU %v (process %v), wall %v; one namespace's dump: CPU %v (median of %d sweeps)",
			kind, median(sweepCPU), median(procCPU), median(sweepWall), median(oneCPU), rounds)
	}

	// Phase 2: the Manager over these namespaces at the default 5% budget.
	func() {
		rec := &fixture.LogRecorder{}
		m, err := NewManager(Config{
			Refresh: 30 * time.Second, Interval: time.Second, CPUBudget: 0.05, Logger: slog.New(rec),
			NewSampler: func(h *Handle) (*collector.Sampler, error) {
				return collector.NewSampler(collector.Options{Dial: h.Dial, InNetns: h.Do, Logger: slog.New(rec)}), nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer fixture.Background(t, "Manager.Run", m.Run).Stop(fixture.DefaultStopGrace)
		// Let the first sweep (all full, paced) run, then measure a
		// steady window.
		time.Sleep(30 * time.Second)
		p0, w0 := processCPU(), time.Now()
		st0 := m.Stats()
		time.Sleep(60 * time.Second)
		used := processCPU() - p0
		wall := time.Since(w0)
		st := m.Stats()
		var dumps uint64
		var full, rare uint64
		for _, tg := range m.Targets() {
			v := tg.Sampler.View(time.Now())
			full += v.Stats[collector.Full].Dumps
			rare += v.Stats[collector.Rare].Dumps
		}
		dumps = full + rare
		t.Logf("Manager at 5%% over %d namespaces: process CPU %.2f%% of a core over %v; sweeps %d→%d, latest sweep CPU %v, wall %v; planned period %v, full every %v; dumps so far %d (full %d, rare %d); warnings %q",
			st.Namespaces, 100*used.Seconds()/wall.Seconds(), wall.Round(time.Second), st0.Sweeps, st.Sweeps,
			st.SweepCPU, st.SweepDuration.Round(time.Millisecond), st.Period.Round(time.Millisecond), st.FullEvery.Round(time.Millisecond),
			dumps, full, rare, rec.Records())
	}()

	// Phase 3: the same number of sockets in one namespace.
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
			t.Error(err)
		}
	}
	name := newNamedNetns(t).Name()
	path := "/run/netns/" + name
	const single = nsCount * pairsPer // pairs
	per := single / 6
	for i := range 6 {
		n := per
		if i == 5 {
			n = single - 5*per
		}
		startHelper(t, "", sockSpec{Path: path, Pairs: n})
	}
	t.Logf("one namespace with %d sockets; TCP sockets allocated on the node: %s", 2*single+6, tcpAlloc())
	h, err := Open(Namespace{Key: Key{Dev: own.Dev, Inode: inodeOf(t, path)}, Path: path}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := h.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, kind := range collector.Kinds {
		var cpu, wall []time.Duration
		for range rounds {
			d := dumpOnce(t, c, kind)
			want := 2*single + 6
			if kind == collector.Rare {
				want = 6
			}
			if d.sockets != want {
				t.Errorf("single namespace: %v dump saw %d sockets, want %d", kind, d.sockets, want)
			}
			cpu = append(cpu, d.cpu)
			wall = append(wall, d.wall)
		}
		t.Logf("1 namespace, one %v dump: CPU %v, wall %v (median of %d)", kind, median(cpu), median(wall), rounds)
	}
}
