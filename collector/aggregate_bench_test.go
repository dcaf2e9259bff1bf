package collector

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

// benchSockets mimics the project's 1M-socket loopback fixture: 31
// listeners, and connected pairs whose client side is outbound (an
// ephemeral local port towards a listener) and whose server side is
// inbound (local port = a listener's).
func benchSockets(pairs int) []diag.Socket {
	lo := netip.MustParseAddr("127.0.0.1")
	const listeners = 31
	socks := make([]diag.Socket, 0, 2*pairs+listeners)
	for i := range listeners {
		s := sock(diag.AFInet, diag.Listen, lo, uint16(10000+i), netip.Addr{}, 0)
		s.WQueue = 4096
		socks = append(socks, s)
	}
	for i := range pairs {
		lport := uint16(10000 + i%listeners)
		eph := uint16(32768 + (i/listeners)%28232)
		socks = append(socks,
			sock(diag.AFInet, diag.Established, lo, eph, lo, lport),
			sock(diag.AFInet, diag.Established, lo, lport, lo, eph))
	}
	return socks
}

// countOnly is the floor: what a dump callback costs that only counts
// states.
type countOnly struct{ c Counts }

func (k *countOnly) add(s *diag.Socket) error {
	if s.State <= diag.MaxState && (s.Family == diag.AFInet || s.Family == diag.AFInet6) {
		k.c[familyIndex(s.Family)][s.State]++
	}
	return nil
}

// BenchmarkAggregateFull measures the aggregator's per-socket cost over a
// full dump of 1M sockets, against the count-only floor. At ~1.4 µs of
// kernel time per socket for the dump itself, the difference per socket is
// the overhead over a raw dump.
func BenchmarkAggregateFull(b *testing.B) {
	socks := benchSockets(500000)
	pr := procnet.PortRange{Low: 32768, High: 60999}
	b.Run("floor", func(b *testing.B) {
		var k countOnly
		b.ReportAllocs()
		for b.Loop() {
			k = countOnly{}
			for i := range socks {
				k.add(&socks[i])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(socks)), "ns/socket")
	})
	b.Run("aggregator", func(b *testing.B) {
		a := newAggregator(100000)
		// Warm the listening-port set as a previous dump would.
		a.reset(&Sample{Time: time.Now()}, true, pr, true)
		for i := range socks {
			a.add(&socks[i])
		}
		a.finish()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			a.reset(&Sample{Time: time.Now()}, true, pr, true)
			for i := range socks {
				a.add(&socks[i])
			}
			a.finish()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(socks)), "ns/socket")
	})
}

// TestAggregatorAddAllocs holds a whole dump's aggregation (reset and every
// socket, listeners included) to zero allocations once the maps and slices
// have grown to the dump's size.
func TestAggregatorAddAllocs(t *testing.T) {
	socks := benchSockets(2000)
	if allocs, _ := dumpAllocs(socks); allocs != 0 {
		t.Errorf("%v allocations per dump of %d sockets, want 0", allocs, len(socks))
	}
}

// dumpAllocs aggregates socks once as a full dump to grow the tables, then
// returns the allocations of a further dump's reset and sockets (finish
// left out), and the aggregator.
func dumpAllocs(socks []diag.Socket) (float64, *aggregator) {
	a := newAggregator(100)
	pr := procnet.PortRange{Low: 32768, High: 60999}
	a.reset(&Sample{Time: time.Now()}, true, pr, true)
	for i := range socks {
		a.add(&socks[i])
	}
	a.finish()
	smp := &Sample{Time: time.Now()}
	return testing.AllocsPerRun(10, func() {
		a.reset(smp, true, pr, true)
		for i := range socks {
			a.add(&socks[i])
		}
	}), a
}

// BenchmarkAggregateParts splits the aggregator's per-socket cost by part,
// over 1M sockets as benchSockets makes them but with the socket in cache,
// as in a real dump, where each message is decoded into one reused Socket
// just before the aggregator sees it (BenchmarkAggregateFull streams 120
// MB of sockets from memory instead, and measures memory bandwidth as
// much as the aggregator): the 31 listeners once, then the connected
// sockets of benchSockets(1000) 500 times. Parts: states (counts,
// listeners, CLOSE_WAIT: what a rare dump does), states with destinations
// (connection health off), the whole full dump, and the connection-health
// calls alone: the timer and self-connect checks of every connected socket
// (see with inbound false), and the client accounting of the inbound ones
// (addClient).
func BenchmarkAggregateParts(b *testing.B) {
	const repeat = 500
	all := benchSockets(1000)
	lst, conns := all[:31], all[31:]
	n := len(lst) + repeat*len(conns)
	pr := procnet.PortRange{Low: 32768, High: 60999}
	dump := func(b *testing.B, withDest, health bool) {
		a := newAggregator(100000)
		run := func() {
			a.reset(&Sample{Time: time.Now()}, withDest, pr, true)
			a.health.on = health
			for i := range lst {
				a.add(&lst[i])
			}
			for range repeat {
				for i := range conns {
					a.add(&conns[i])
				}
			}
			a.finish()
		}
		run() // warm the listening-port set and the tables
		measureParts(b, n, run)
	}
	b.Run("states", func(b *testing.B) { dump(b, false, false) })
	b.Run("destinations", func(b *testing.B) { dump(b, true, false) })
	b.Run("full", func(b *testing.B) { dump(b, true, true) })
	health := func(b *testing.B, clients bool) {
		a := newAggregator(100000)
		a.reset(&Sample{Time: time.Now()}, true, pr, true)
		for i := range all {
			a.add(&all[i]) // the listening ports, and the tables grown
		}
		a.finish()
		run := func() {
			a.health.reset(true, time.Now())
			for range repeat {
				for i := range conns {
					s := &conns[i]
					switch {
					case !clients:
						a.health.see(s, false)
					case a.ports.has(s.SrcPort):
						a.health.addClient(s)
					}
				}
			}
		}
		measureParts(b, n, run)
	}
	b.Run("health-timers-self", func(b *testing.B) { health(b, false) })
	b.Run("health-clients", func(b *testing.B) { health(b, true) })
}

// measureParts runs run in b's loop and reports the wall and the process
// CPU time per socket (n sockets per run): on a shared machine the CPU time
// leaves out the time the benchmark waited for a core.
func measureParts(b *testing.B, n int, run func()) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for b.Loop() {
		run()
	}
	cpu = processCPU() - cpu
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/socket")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/socket")
}
