package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"testing"
)

// BenchmarkGzipLevel compresses the /metrics page of the 1M-socket
// benchmark namespace (testdata/metrics-1m.txt, saved from the running
// exporter there) at promhttp's default level and at withGzip's BestSpeed,
// reporting the compressed size. BenchmarkGzipWriter reports what one
// BestSpeed writer allocates, the memory withGzip bounds.
//
//	go test -run '^$' -bench 'Gzip' -benchmem ./cmd/tcpstate-exporter
func BenchmarkGzipLevel(b *testing.B) {
	page, err := os.ReadFile("testdata/metrics-1m.txt")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		level int
	}{{"default", gzip.DefaultCompression}, {"bestspeed", gzip.BestSpeed}} {
		b.Run(c.name, func(b *testing.B) {
			w, err := gzip.NewWriterLevel(io.Discard, c.level)
			if err != nil {
				b.Fatal(err)
			}
			var out bytes.Buffer
			b.SetBytes(int64(len(page)))
			for b.Loop() {
				out.Reset()
				w.Reset(&out)
				if _, err := w.Write(page); err != nil {
					b.Fatal(err)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(out.Len()), "compressed-bytes")
		})
	}
}

func BenchmarkGzipWriter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		w, err := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
		if err != nil {
			b.Fatal(err)
		}
		// The compressor's tables are allocated on the first write.
		if _, err := w.Write([]byte("x")); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
