package main

import (
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
)

// withGzip compresses the responses of h at gzip.BestSpeed for clients that
// accept gzip (Prometheus always does). promhttp compresses at the default
// level, and on the 1M-socket benchmark's 68 KB page that was the largest
// single cost of a scrape: about 0.34 ms against 0.096 ms at BestSpeed, for
// a body of 6555 bytes against 7440 (BenchmarkGzipLevel). h must not
// compress.
//
// A gzip writer holds 1.2 MB (BenchmarkGzipWriter), so there are at most
// `writers` of them: a response that finds none free (more concurrent scrapes
// than that) is sent uncompressed, which costs bytes on the wire but no
// memory or CPU.
func withGzip(h http.Handler, writers int) http.Handler {
	free := make(chan *gzip.Writer, writers)
	for range writers {
		free <- nil // allocated on first use
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r.Header.Values("Accept-Encoding")) {
			h.ServeHTTP(w, r)
			return
		}
		gw := &gzipResponseWriter{ResponseWriter: w, free: free}
		defer gw.finish()
		h.ServeHTTP(gw, r)
	})
}

// gzipResponseWriter takes a gzip writer from free when the header is
// written (after the handler gathered its metrics and set its headers; an
// http.Error clears some of them) and compresses the body through it, or
// leaves the body as it is if none is free.
type gzipResponseWriter struct {
	http.ResponseWriter
	free        chan *gzip.Writer
	gz          *gzip.Writer
	wroteHeader bool
}

func (g *gzipResponseWriter) WriteHeader(code int) {
	if g.wroteHeader {
		return
	}
	g.wroteHeader = true
	select {
	case gz := <-g.free:
		if gz == nil {
			gz, _ = gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
		}
		gz.Reset(g.ResponseWriter)
		g.gz = gz
		h := g.Header()
		h.Del("Content-Length")
		h.Set("Content-Encoding", "gzip")
	default:
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipResponseWriter) Write(b []byte) (int, error) {
	g.WriteHeader(http.StatusOK)
	if g.gz == nil {
		return g.ResponseWriter.Write(b)
	}
	return g.gz.Write(b)
}

// finish ends the compressed stream and returns the writer.
func (g *gzipResponseWriter) finish() {
	if g.gz == nil {
		return
	}
	_ = g.gz.Close()
	g.gz.Reset(nil)
	g.free <- g.gz
	g.gz = nil
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (g *gzipResponseWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// acceptsGzip reports whether the Accept-Encoding header values accept gzip:
// "gzip" (or "x-gzip"), or "*" without gzip itself, with a q-value above 0.
func acceptsGzip(values []string) bool {
	star := false
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if ok && strings.EqualFold(strings.TrimSpace(name), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					if err != nil {
						f = 0
					}
					q = f
				}
			}
			switch coding {
			case "gzip", "x-gzip":
				return q > 0
			case "*":
				star = q > 0
			}
		}
	}
	return star
}
