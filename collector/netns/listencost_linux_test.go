//go:build linux

package netns

import (
	"io"
	"log/slog"
	"testing"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// benchListen measures cheap-path samples (counters, sockstat, a
// LISTEN-only dump, the detectors) of a new namespace through a Handle, as
// the Manager runs them every second for every namespace. With switchInto
// false the procfs reads are the agent's own, without switching a thread
// into the namespace: the difference is what Handle.Do costs.
func benchListen(b *testing.B, switchInto bool) {
	ns := newNamedNetns(b)
	k, err := statKey(ns.Path())
	if err != nil {
		b.Fatal(err)
	}
	h, err := Open(Namespace{Key: k, Path: ns.Path()}, "/proc")
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	opts := collector.SamplerOptions{Dial: h.Dial, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if switchInto {
		opts.InNetns = h.Do
	}
	s := collector.NewSampler(opts)
	defer s.Close()
	if _, err := s.Sample(collector.Full); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := processCPU()
	for b.Loop() {
		if _, err := s.Sample(collector.Listen); err != nil {
			b.Fatal(err)
		}
	}
	// The process's CPU, every thread: what the budget pays, where ns/op
	// is wall time on a shared machine.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkListenSample(b *testing.B)         { benchListen(b, true) }
func BenchmarkListenSampleNoSwitch(b *testing.B) { benchListen(b, false) }
