package collector

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

// BenchmarkGather measures one scrape of the Exporter over the shape of the
// 1M-socket benchmark namespace: 85 listeners with full accept queues (each
// a finding) and 51 destinations.
func BenchmarkGather(b *testing.B) {
	var socks []diag.Socket
	for i := 0; i < 85; i++ {
		socks = append(socks, listener(diag.AFInet, v4lo, uint16(2000+i), 8192, 8256))
	}
	for j := 0; j < 51; j++ {
		socks = append(socks, sock(diag.AFInet, diag.Established, v4lo, uint16(40000+j), netip.MustParseAddr("127.0.0.2"), uint16(2000+j)))
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks)})
	for range 2 {
		if _, err := s.Sample(Full); err != nil {
			b.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
