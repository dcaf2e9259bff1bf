//go:build linux

package netns

import (
	"io"
	"log/slog"
	"testing"

	"github.com/tcpstate/tcpstate-exporter/collector"
)

// BenchmarkListenSample measures one cheap-path sample (counters, sockstat,
// a LISTEN-only dump, the detectors) of another namespace through a Handle,
// as the Manager runs it every second for every namespace.
func BenchmarkListenSample(b *testing.B) {
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
	s := collector.NewSampler(collector.Options{Dial: h.Dial, InNetns: h.Do, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer s.Close()
	if _, err := s.Sample(collector.Full); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Sample(collector.Listen); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListenSampleNoSwitch is BenchmarkListenSample reading the
// agent's own procfs files, without switching a thread into the namespace:
// the difference is what Handle.Do costs.
func BenchmarkListenSampleNoSwitch(b *testing.B) {
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
	s := collector.NewSampler(collector.Options{Dial: h.Dial, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer s.Close()
	if _, err := s.Sample(collector.Full); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Sample(collector.Listen); err != nil {
			b.Fatal(err)
		}
	}
}
