//go:build linux

package events

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// BenchmarkConnectCycle measures connect/accept/close cycles on loopback in
// a namespace of its own with the event programs off and on (filtered to
// that namespace, as in host mode), side by side in one run: six rounds,
// each a block of b.N cycles with events off and one with them on, in
// alternating order, so that drift on a shared machine falls on both. It
// reports the median CPU time (user and system of the process: the kernel's
// TCP work, and the programs, run on the dialling thread) and wall time per
// cycle of each, and the CPU overhead of events in percent. TIME_WAIT is
// disabled in the namespace (tcp_max_tw_buckets 0) so that every round
// starts from the same state. Run it alone, under the machine-wide lock:
//
//	flock /tmp/bench.lock go test -run '^$' -bench ConnectCycle -benchtime 3000x ./events
func BenchmarkConnectCycle(b *testing.B) {
	ns := fixture.NewNetnsPrefix(b, "tsevb-")
	if err := ns.Sysctl("net.ipv4.tcp_max_tw_buckets", "0"); err != nil {
		b.Fatal(err)
	}
	var cookie uint64
	if err := ns.Do(func() (err error) { cookie, err = NetnsCookie(); return err }); err != nil {
		b.Fatal(err)
	}
	if err := Check(); err != nil {
		b.Fatalf("cannot load the programs: %v", err)
	}
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	var progNs []float64 // the programs' run time per cycle, per round

	// block runs n cycles on a thread inside the namespace and returns the
	// CPU and wall time per cycle.
	block := func(n int) (cpu, wall time.Duration) {
		err := ns.Do(func() error {
			d := net.Dialer{KeepAlive: -1}
			buf := make([]byte, 1)
			var r0, r1 unix.Rusage
			unix.Getrusage(unix.RUSAGE_SELF, &r0)
			t0 := time.Now()
			for range n {
				c, err := d.Dial("tcp4", addr)
				if err != nil {
					return err
				}
				s, err := ln.Accept()
				if err != nil {
					return err
				}
				c.Close()
				s.Read(buf) // the client's FIN
				s.Close()
			}
			wall = time.Since(t0)
			unix.Getrusage(unix.RUSAGE_SELF, &r1)
			cpu = time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) * time.Nanosecond
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		return cpu / time.Duration(n), wall / time.Duration(n)
	}
	withEvents := func(n int) (cpu, wall time.Duration) {
		src, err := Open(SourceOptions{Netns: cookie})
		if err != nil {
			b.Fatal(err)
		}
		defer src.Close()
		rt0, _, err := src.programStats()
		if err != nil {
			b.Fatal(err)
		}
		cpu, wall = block(n)
		rt1, _, err := src.programStats()
		if err != nil {
			b.Fatal(err)
		}
		progNs = append(progNs, float64(rt1-rt0)/float64(n))
		snap, err := src.Read()
		if err != nil {
			b.Fatal(err)
		}
		nsr := snap.Namespaces[cookie]
		if nsr == nil || nsr.Total(KindOpen) != uint64(2*n) || nsr.Total(KindClose) < uint64(2*n)-2 {
			b.Fatalf("the programs did not count the cycles: %+v", nsr)
		}
		if d := snap.Drops; d != (Drops{}) {
			b.Fatalf("drops %+v", d)
		}
		return cpu, wall
	}

	// The kernel's own accounting of the programs' run time
	// (kernel.bpf_stats_enabled) measures their cost directly, apart from
	// the noise of a shared machine.
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Fatalf("enabling BPF run-time stats: %v", err)
	}
	defer stats.Close()

	block(min(b.N, 500)) // warm up
	var offCPU, onCPU, offWall, onWall []time.Duration
	b.ResetTimer()
	for round := range 6 {
		var c1, w1, c2, w2 time.Duration
		if round%2 == 0 {
			c1, w1 = block(b.N)
			c2, w2 = withEvents(b.N)
		} else {
			c2, w2 = withEvents(b.N)
			c1, w1 = block(b.N)
		}
		offCPU, offWall = append(offCPU, c1), append(offWall, w1)
		onCPU, onWall = append(onCPU, c2), append(onWall, w2)
	}
	b.StopTimer()
	med := func(ds []time.Duration) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[len(s)/2-1]+s[len(s)/2]) / 2
	}
	b.ReportMetric(med(offCPU), "off-cpu-ns/cycle")
	b.ReportMetric(med(onCPU), "on-cpu-ns/cycle")
	b.ReportMetric(med(offWall), "off-wall-ns/cycle")
	b.ReportMetric(med(onWall), "on-wall-ns/cycle")
	b.ReportMetric(100*(med(onCPU)-med(offCPU))/med(offCPU), "cpu-overhead-%")
	slices.Sort(progNs)
	pm := (progNs[len(progNs)/2-1] + progNs[len(progNs)/2]) / 2
	b.ReportMetric(pm, "bpf-ns/cycle")
	b.ReportMetric(100*pm/med(offCPU), "bpf-overhead-%")
	b.ReportMetric(100*(med(onWall)-med(offWall))/med(offWall), "wall-overhead-%")
	b.Logf("per-round CPU ns/cycle off %v on %v; programs' run time ns/cycle %v", offCPU, onCPU, progNs)
}

// BenchmarkRead reads maps filled from user space to their 16384 entries
// each (one namespace, distinct remote addresses), with batch lookups and
// key by key (the fallback for kernels before 5.6), so that the agent's
// cost of a read of full maps, a scan's worst case, is measured:
//
//	flock /tmp/bench.lock go test -run '^$' -bench 'Read$' -benchtime 20x ./events
func BenchmarkRead(b *testing.B) {
	if err := Check(); err != nil {
		b.Fatalf("cannot load the programs: %v", err)
	}
	// A namespace cookie no real namespace has: the programs count nothing
	// into it, and the maps are filled by the benchmark alone.
	src, err := Open(SourceOptions{Netns: 1<<64 - 1})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	const n = 16384
	for i := range n {
		k := Key{Netns: 7, Kind: KindResetReceived, Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), LocalPort: 443}
		v := encodeValue(Value{Count: uint64(i + 1)})
		if err := src.details.Put(encodeKey(k), v); err != nil {
			b.Fatalf("filling details, entry %d: %v", i, err)
		}
		k.Addr = netip.Addr{}
		k.Code = uint32(i)
		if err := src.totals.Put(encodeKey(k), v); err != nil {
			b.Fatalf("filling totals, entry %d: %v", i, err)
		}
	}
	for _, mode := range []string{"batch", "iterate"} {
		b.Run(mode, func(b *testing.B) {
			src.noBatch = mode == "iterate"
			b.ReportAllocs()
			for b.Loop() {
				snap, err := src.Read()
				if err != nil {
					b.Fatal(err)
				}
				if ns := snap.Namespaces[7]; ns == nil || len(ns.Details) != n || len(ns.Totals) != n {
					b.Fatalf("read %+v, want %d records of each map", snap.Namespaces[7], n)
				}
			}
		})
	}
}
