//go:build linux

package collector_test

import (
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// BenchmarkKernelFullDump compares the CPU of the dump inside a Sampler's
// full sample (the kernel's work and the per-socket aggregation callback,
// as Sample.Dump.CPU measures it on the dumping thread) with a raw full
// dump that only counts states, over the same ESTABLISHED loopback sockets
// in a test namespace. The rest of a sample (sorting, CLOSE_WAIT groups,
// kernel counters, detectors) is not in it; internal/bench/diagbench
// measures whole samples with the process's CPU. The number of
// sockets is TCPSTATE_BENCH_SOCKETS (default 200000). It reports the CPU
// milliseconds per dump of each and their ratio.
func BenchmarkKernelFullDump(b *testing.B) {
	n := 200000
	if v, err := strconv.Atoi(os.Getenv("TCPSTATE_BENCH_SOCKETS")); err == nil && v > 0 {
		n = v &^ 1
	}
	ns := fixture.NewNetnsPrefix(b, scenarioPrefix)
	set := fixture.Bulk(b, ns, n, fixture.IPv4)
	b.Logf("%d sockets in %d processes, built in %v", n, set.Processes(), set.Elapsed().Round(time.Millisecond))
	f, err := os.Open(ns.Path())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	dial := func() (*diag.Conn, error) { return diag.Dial(&diag.DialOptions{NetNS: int(f.Fd())}) }

	var rawCPU, samplerCPU float64
	b.Run("raw", func(b *testing.B) {
		c, err := dial()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		var counts [diag.MaxState + 1]uint64
		count := func(s *diag.Socket) error {
			if s.State <= diag.MaxState {
				counts[s.State]++
			}
			return nil
		}
		var cpu time.Duration
		for b.Loop() {
			st, err := c.Dump(diag.Request{States: diag.AllStates}, count)
			if err != nil {
				b.Fatal(err)
			}
			cpu += st.CPU
		}
		rawCPU = cpu.Seconds() * 1000 / float64(b.N)
		b.ReportMetric(rawCPU, "cpu-ms/dump")
	})
	b.Run("sampler", func(b *testing.B) {
		s := collector.NewSampler(collector.SamplerOptions{Dial: dial, InNetns: ns.Do, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		defer s.Close()
		var cpu time.Duration
		for b.Loop() {
			smp, err := s.Sample(collector.Full)
			if err != nil {
				b.Fatal(err)
			}
			cpu += smp.Dump.CPU
		}
		samplerCPU = cpu.Seconds() * 1000 / float64(b.N)
		b.ReportMetric(samplerCPU, "cpu-ms/dump")
	})
	if rawCPU > 0 {
		b.Logf("sampler / raw CPU per full dump of %d sockets: %.3f (%.1f ms / %.1f ms)", n, samplerCPU/rawCPU, samplerCPU, rawCPU)
	}
}
