//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// procCPUSplit returns a process's user and system CPU time.
func procCPUSplit(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command (which may hold spaces) start after ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat: %w", pid, errors.Join(err1, err2))
	}
	tick := 10 * time.Millisecond // USER_HZ 100
	return time.Duration(ut) * tick, time.Duration(st) * tick, nil
}

// churn opens and closes connections to addr inside ns at about rate per
// second, from workers threads, for d, and returns how many it completed.
func churn(ns *fixture.Netns, addr string, rate, workers int, d time.Duration) (int64, error) {
	var done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- ns.Do(func() error {
				dl := net.Dialer{KeepAlive: -1}
				per := time.Duration(workers) * time.Second / time.Duration(rate)
				next := start.Add(time.Duration(w) * per / time.Duration(workers))
				for time.Since(start) < d {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					}
					next = next.Add(per)
					c, err := dl.Dial("tcp4", addr)
					if err != nil {
						return err
					}
					c.Close()
					done.Add(1)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return done.Load(), err
		}
	}
	return done.Load(), nil
}

// BenchmarkEventsAgentCPU measures the exporter's own CPU while a namespace
// opens and closes 10k connections per second, with --collector.events=off
// and =on, one after the other in one run. The exporter samples that
// namespace (host mode); the load runs on other threads of the test. Run it
// alone, under the machine-wide lock:
//
//	flock /tmp/bench.lock go test -run '^$' -bench EventsAgentCPU -benchtime 1x ./cmd/tcpstate-exporter
func BenchmarkEventsAgentCPU(b *testing.B) {
	const rate, window = 10000, 15 * time.Second
	bin := exporterBinary(b)
	for _, mode := range []string{"off", "on"} {
		b.Run("events="+mode, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			ns := fixture.NewNetnsPrefix(b, "tsevc-")
			if err := ns.Sysctl("net.ipv4.tcp_max_tw_buckets", "0"); err != nil {
				b.Fatal(err)
			}
			// A server that accepts and closes.
			var ln net.Listener
			if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				buf := make([]byte, 1)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { c.Read(buf); c.Close() }()
				}
			}()
			cmd := ns.Command(ctx, bin, "--web.listen-address="+exporterAddr, "--collector.events="+mode)
			logs := &fixture.LogBuffer{}
			cmd.Stdout, cmd.Stderr = logs, logs
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
			client := &http.Client{Timeout: 5 * time.Second, Transport: nsTransport(ns, nil)}
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp, err := client.Get("http://" + exporterAddr + "/-/ready")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				if time.Now().After(deadline) {
					b.Fatalf("exporter not ready:\n%s", logs.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
			pid := cmd.Process.Pid
			u0, s0, err := procCPUSplit(pid)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			n, err := churn(ns, ln.Addr().String(), rate, 4, window)
			if err != nil {
				b.Fatal(err)
			}
			el := time.Since(t0)
			u1, s1, err := procCPUSplit(pid)
			if err != nil {
				b.Fatal(err)
			}
			if mode == "on" && !strings.Contains(logs.String(), "eBPF connection events on") {
				b.Fatalf("events did not load:\n%s", logs.String())
			}
			if mode == "on" {
				// Churn must not grow the details map (it did when every
				// reset to an ephemeral port took a key of its own).
				resp, err := client.Get("http://" + exporterAddr + "/metrics")
				if err != nil {
					b.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					b.Fatal(err)
				}
				value := func(series string) float64 {
					i := strings.Index(string(body), series+" ")
					if i < 0 {
						b.Fatalf("no %s in /metrics", series)
					}
					v, _, _ := strings.Cut(string(body[i+len(series)+1:]), "\n")
					f, err := strconv.ParseFloat(v, 64)
					if err != nil {
						b.Fatalf("%s %q: %v", series, v, err)
					}
					return f
				}
				entries := value(`tcpstate_events_map_entries{map="details"}`)
				b.ReportMetric(entries, "details-entries")
				// The churn has one destination and one listener: a few
				// keys, whatever the number of connections.
				if entries > 100 {
					b.Errorf("%v entries in the details map after the churn, want a few: keys take ephemeral ports", entries)
				}
				if d := value(`tcpstate_events_dropped_total{map="details"}`); d != 0 {
					b.Errorf("details events dropped: %v, want 0", d)
				}
			}
			b.ReportMetric(float64(n)/el.Seconds(), "conns/s")
			b.ReportMetric(100*(u1-u0+s1-s0).Seconds()/el.Seconds(), "agent-cpu-%")
			b.ReportMetric(100*(u1-u0).Seconds()/el.Seconds(), "agent-user-%")
			b.ReportMetric(100*(s1-s0).Seconds()/el.Seconds(), "agent-sys-%")
		})
	}
}
