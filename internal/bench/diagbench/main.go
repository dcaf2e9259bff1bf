//go:build linux

// Command diagbench measures one way of counting the TCP sockets of the
// current network namespace, in its own process so that peak RSS belongs to
// that way alone, and prints one JSON line. scripts/bench.sh runs it side by
// side with the other modes:
//
//	floor          a minimal raw sock_diag dump that reads only each
//	               message's state byte (same request as the exporter)
//	exporter       the exporter's full sample (collector.Sampler)
//	halfopen       the exporter's half-open sweep (Sampler.Sweep: ESTABLISHED
//	               only, with INET_DIAG_INFO), after one full sample
//	nodeexporter   node_exporter's tcpstat approach: mdlayher/netlink
//	               Execute per family with INET_DIAG_INFO, every message
//	               kept in memory and its attributes decoded
//	scrape         concurrent GETs of a running exporter's /metrics,
//	               reporting latency percentiles
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/collector"
	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
)

type result struct {
	Mode        string  `json:"mode"`
	Samples     int     `json:"samples"`
	Sockets     uint64  `json:"sockets"`
	CPUSeconds  float64 `json:"cpu_seconds_per_sample"`
	WallSeconds float64 `json:"wall_seconds_per_sample"`
	Allocs      float64 `json:"allocs_per_sample"`
	AllocBytes  float64 `json:"alloc_bytes_per_sample"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
	// metrics mode: the running exporter's own numbers
	FullCPUPerDump  float64 `json:"full_cpu_per_dump,omitempty"`
	RareCPUPerDump  float64 `json:"rare_cpu_per_dump,omitempty"`
	FullInterval    float64 `json:"full_interval_planned,omitempty"`
	HalfOpenCPU     float64 `json:"halfopen_cpu_per_sweep,omitempty"`
	HalfOpenIntvl   float64 `json:"halfopen_interval_planned,omitempty"`
	HalfOpenShare   float64 `json:"halfopen_budget_share,omitempty"`
	RareInterval    float64 `json:"rare_interval_planned,omitempty"`
	CPUShare        float64 `json:"dump_cpu_share,omitempty"`
	ResidentMB      float64 `json:"resident_mb,omitempty"`
	ExporterVMHWMKB float64 `json:"exporter_vmhwm_kb,omitempty"`
	Target          int     `json:"target,omitempty"`
	ProcessCPUShare float64 `json:"process_cpu_share,omitempty"`
	Duration        string  `json:"duration,omitempty"`
	Round           int     `json:"round,omitempty"`
	// scrape mode
	Requests int     `json:"requests,omitempty"`
	Errors   int     `json:"errors,omitempty"`
	P50ms    float64 `json:"p50_ms,omitempty"`
	P99ms    float64 `json:"p99_ms,omitempty"`
	Maxms    float64 `json:"max_ms,omitempty"`
}

func main() {
	mode := flag.String("mode", "exporter", "floor, exporter, nodeexporter or scrape")
	n := flag.Int("n", 3, "samples to measure (after one warm-up)")
	method := flag.String("method", "auto", "exporter/floor request: auto (legacy), legacy or v2")
	url := flag.String("url", "http://127.0.0.1:9874/metrics", "scrape mode: URL")
	dur := flag.Duration("duration", 20*time.Second, "scrape mode: how long")
	conc := flag.Int("concurrency", 4, "scrape mode: concurrent scrapers")
	every := flag.Duration("every", 0, "scrape mode: each scraper waits this long between scrapes (0: back to back)")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "diagbench: -n must be at least 1")
		os.Exit(2)
	}
	var r result
	var err error
	switch *mode {
	case "scrape":
		r, err = scrape(*url, *dur, *conc, *every)
	case "metrics":
		r, err = selfMetrics(*url)
	case "table":
		err = table(os.Stdin, os.Stdout)
		if err == nil {
			return
		}
	case "floor", "exporter", "exporter-quiet", "nodeexporter", "halfopen":
		r, err = measure(*mode, *n, *method)
		if *method == "v2" {
			r.Mode += "-v2"
		}
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "diagbench:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

func measure(mode string, n int, method string) (result, error) {
	var once func() (uint64, error)
	switch mode {
	case "floor":
		legacy := method != "v2"
		once = func() (uint64, error) { return floor(legacy) }
	case "exporter", "exporter-quiet":
		m := diag.MethodAuto
		if method == "v2" {
			m = diag.MethodV2
		}
		cfg := detect.DefaultConfig()
		if mode == "exporter-quiet" {
			// sockfill's listeners never accept, so each is a finding
			// (TCPAcceptQueueOverflow) with its evidence strings; this
			// mode raises that threshold past them to measure sampling
			// without findings.
			cfg.AcceptQueueRatio = 1
		}
		s := collector.NewSampler(collector.SamplerOptions{Method: m, Detect: cfg})
		once = func() (uint64, error) {
			smp, err := s.Sample(collector.Full)
			if err != nil {
				return 0, err
			}
			return smp.Counts.Total(), nil
		}
	case "nodeexporter":
		once = nodeExporter
	case "halfopen":
		m := diag.MethodAuto
		if method == "v2" {
			m = diag.MethodV2
		}
		s := collector.NewSampler(collector.SamplerOptions{Method: m})
		if _, err := s.Sample(collector.Full); err != nil {
			return result{}, err
		}
		once = func() (uint64, error) {
			ho, err := s.Sweep()
			if err != nil {
				return 0, err
			}
			return uint64(ho.Dump.Sockets), nil
		}
	}
	if _, err := once(); err != nil { // warm-up
		return result{}, err
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := processCPU()
	t0 := time.Now()
	var total uint64
	for range n {
		c, err := once()
		if err != nil {
			return result{}, err
		}
		total = c
	}
	wall := time.Since(t0)
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&ms1)
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return result{
		Mode:        mode,
		Samples:     n,
		Sockets:     total,
		CPUSeconds:  cpu.Seconds() / float64(n),
		WallSeconds: wall.Seconds() / float64(n),
		Allocs:      float64(ms1.Mallocs-ms0.Mallocs) / float64(n),
		AllocBytes:  float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(n),
		PeakRSSMB:   float64(ru.Maxrss) / 1024,
	}, nil
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floor is the least a program can do: send the request, read datagrams into
// one buffer, count the state byte of each message.
func floor(legacy bool) (uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	var total uint64
	reqs := [][]byte{}
	if legacy {
		reqs = append(reqs, request(18, legacyPayload()))
	} else {
		reqs = append(reqs, request(20, v2Payload(unix.AF_INET)), request(20, v2Payload(unix.AF_INET6)))
	}
	for _, req := range reqs {
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return 0, err
		}
	recv:
		for {
			k, err := unix.Read(fd, buf)
			if err != nil {
				return 0, err
			}
			b := buf[:k]
			for len(b) >= 16 {
				l := int(binary.NativeEndian.Uint32(b[0:4]))
				typ := binary.NativeEndian.Uint16(b[4:6])
				if l < 16 || l > len(b) {
					return 0, fmt.Errorf("bad message length %d", l)
				}
				if typ == unix.NLMSG_DONE || typ == unix.NLMSG_ERROR {
					// Both carry an errno (negative, or 0 for an
					// acknowledgement): a failed dump is no floor.
					if l >= 20 {
						if e := int32(binary.NativeEndian.Uint32(b[16:20])); e != 0 {
							return 0, fmt.Errorf("dump failed: %w", unix.Errno(-e))
						}
					}
					break recv
				}
				if b[16+1] != 0 { // the state byte
					total++
				}
				b = b[(l+3)&^3:]
			}
		}
	}
	return total, nil
}

func request(typ uint16, payload []byte) []byte {
	b := make([]byte, 16+len(payload))
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], typ)
	binary.NativeEndian.PutUint16(b[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:12], 1)
	copy(b[16:], payload)
	return b
}

func legacyPayload() []byte {
	p := make([]byte, 60)
	p[0] = unix.AF_INET
	binary.NativeEndian.PutUint32(p[52:56], uint32(diag.AllStates))
	return p
}

func v2Payload(family byte) []byte { return v2PayloadExt(family, 0) }

func v2PayloadExt(family byte, ext byte) []byte {
	p := make([]byte, 56)
	p[0], p[1], p[2] = family, unix.IPPROTO_TCP, ext
	binary.NativeEndian.PutUint32(p[4:8], uint32(diag.AllStates))
	return p
}

// nodeExporter mirrors node_exporter 1.12's tcpstat collector: one
// Execute per family asking for INET_DIAG_INFO, all replies held in memory,
// then every message decoded with its attributes.
func nodeExporter() (uint64, error) {
	conn, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var total uint64
	var rx, tx uint64
	for _, fam := range []byte{unix.AF_INET, unix.AF_INET6} {
		msgs, err := conn.Execute(netlink.Message{
			Header: netlink.Header{Type: 20, Flags: netlink.Request | netlink.Dump},
			Data:   v2PayloadExt(fam, 1<<(diag.AttrInfo-1)),
		})
		if err != nil {
			return 0, err
		}
		for _, m := range msgs {
			if len(m.Data) < 72 {
				return 0, fmt.Errorf("short message")
			}
			var s diag.Socket
			if err := diag.DecodeSocket(m.Data, &s); err != nil {
				return 0, err
			}
			ad, err := netlink.NewAttributeDecoder(s.Attrs)
			if err != nil {
				return 0, err
			}
			for ad.Next() {
				if ad.Type() == diag.AttrInfo {
					info := ad.Bytes()
					_ = info
				}
			}
			if err := ad.Err(); err != nil {
				return 0, err
			}
			rx += uint64(s.RQueue)
			tx += uint64(s.WQueue)
			total++
		}
	}
	_, _ = rx, tx
	return total, nil
}

func scrape(url string, d time.Duration, conc int, every time.Duration) (result, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				el := time.Since(t0)
				if every > el {
					time.Sleep(every - el)
				}
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, el)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return result{}, fmt.Errorf("no successful scrape (%d errors)", errs)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	mode := "scrape"
	if every > 0 {
		mode = "scrape-paced"
	}
	return result{Mode: mode, Duration: d.String(), Requests: len(lat) + errs, Errors: errs, P50ms: pct(0.5), P99ms: pct(0.99), Maxms: float64(lat[len(lat)-1].Microseconds()) / 1000}, nil
}

// selfMetrics reads a running exporter's self-metrics: CPU per dump of each
// kind, the planned intervals, the share of a core its dumps use, its RSS.
func selfMetrics(url string) (result, error) {
	resp, err := http.Get(url)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return result{}, err
	}
	get := func(name, kind string) float64 {
		mf := mfs[name]
		if mf == nil {
			return 0
		}
		for _, m := range mf.GetMetric() {
			ok := kind == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					ok = true
				}
			}
			if !ok {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
		return 0
	}
	r := result{Mode: "metrics"}
	per := func(kind string) float64 {
		if n := get("tcpstate_dumps_total", kind); n > 0 {
			return get("tcpstate_dump_cpu_seconds_total", kind) / n
		}
		return 0
	}
	r.FullCPUPerDump, r.RareCPUPerDump = per("full"), per("rare")
	r.FullInterval = get("tcpstate_sample_interval_planned_seconds", "full")
	r.HalfOpenCPU = per("halfopen")
	r.HalfOpenIntvl = get("tcpstate_sample_interval_planned_seconds", "halfopen")
	r.HalfOpenShare = get("tcpstate_halfopen_sweep_budget_share", "")
	r.RareInterval = get("tcpstate_sample_interval_planned_seconds", "rare")
	if r.FullInterval > 0 && r.RareInterval > 0 {
		r.CPUShare = r.RareCPUPerDump/r.RareInterval + (r.FullCPUPerDump-r.RareCPUPerDump)/r.FullInterval
		if r.HalfOpenIntvl > 0 {
			r.CPUShare += r.HalfOpenCPU / r.HalfOpenIntvl
		}
	}
	r.ResidentMB = get("process_resident_memory_bytes", "") / (1 << 20)
	return r, nil
}

// table turns the JSON lines of a bench run into Markdown tables: per target
// and mode the median over rounds.
func table(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	type key struct {
		target int
		mode   string
	}
	runs := map[key][]result{}
	var targets []int
	for {
		var r result
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		k := key{r.Target, r.Mode}
		if !slices.Contains(targets, r.Target) {
			targets = append(targets, r.Target)
		}
		runs[k] = append(runs[k], r)
	}
	med := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, t := range targets {
		fmt.Fprintf(out, "\n### %d sockets\n\n", t)
		fmt.Fprintln(out, "| mode | sockets counted | CPU per sample (s) | wall per sample (s) | allocs per sample | bytes allocated per sample | peak RSS (MB) | rounds |")
		fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|")
		// Each mode is compared with the floor that sends the same
		// requests: node_exporter's approach, like the -v2 modes, sends
		// one SOCK_DIAG_BY_FAMILY request per family.
		floorOf := map[string]string{"exporter": "floor", "exporter-quiet": "floor", "nodeexporter": "floor-v2", "exporter-v2": "floor-v2", "halfopen": "floor"}
		for _, m := range []string{"floor", "exporter", "exporter-quiet", "nodeexporter", "floor-v2", "exporter-v2", "halfopen"} {
			rs := runs[key{t, m}]
			if len(rs) == 0 {
				continue
			}
			cpu := med(rs, func(r result) float64 { return r.CPUSeconds })
			ratio := ""
			if fm, ok := floorOf[m]; ok {
				if frs := runs[key{t, fm}]; len(frs) > 0 {
					ratio = fmt.Sprintf(" (%.2fx %s)", cpu/med(frs, func(r result) float64 { return r.CPUSeconds }), fm)
				}
			}
			fmt.Fprintf(out, "| %s | %d | %.3f%s | %.3f | %.0f | %.0f | %.1f | %d |\n", m, rs[0].Sockets, cpu, ratio,
				med(rs, func(r result) float64 { return r.WallSeconds }),
				med(rs, func(r result) float64 { return r.Allocs }),
				med(rs, func(r result) float64 { return r.AllocBytes }),
				med(rs, func(r result) float64 { return r.PeakRSSMB }), len(rs))
		}
		if rs := runs[key{t, "scrape"}]; len(rs) > 0 {
			r := rs[0]
			fmt.Fprintf(out, "Then 4 scrapers back to back (throughput-bound on 2 cores): %d scrapes, %d errors, p50 %.2f ms, p99 %.2f ms, max %.2f ms; exporter peak RSS (VmHWM) %.1f MB.\n",
				r.Requests, r.Errors, r.P50ms, r.P99ms, r.Maxms, r.ExporterVMHWMKB/1024)
		}
		if rs := runs[key{t, "scrape-paced"}]; len(rs) > 0 {
			r := rs[0]
			fmt.Fprintf(out, "Then 4 scrapers each scraping every 250 ms for %s (a realistic load, spanning full dumps): %d scrapes, %d errors, p50 %.2f ms, p99 %.2f ms, max %.2f ms.\n",
				r.Duration, r.Requests, r.Errors, r.P50ms, r.P99ms, r.Maxms)
		}
		if rs := runs[key{t, "idle"}]; len(rs) > 0 {
			fmt.Fprintf(out, "\nRunning exporter (default flags), no scrapes: the whole process used %.3f of a core (budget for dumps: 0.05).\n", rs[0].ProcessCPUShare)
		}
		if rs := runs[key{t, "metrics"}]; len(rs) > 0 {
			r := rs[0]
			fmt.Fprintf(out, "Its self-metrics: full dump %.3f s CPU, rare dump %.3f s CPU; planned intervals full %.1f s, rare %.1f s; dumps use %.3f of a core (budget 0.05); RSS %.1f MB.\n",
				r.FullCPUPerDump, r.RareCPUPerDump, r.FullInterval, r.RareInterval, r.CPUShare, r.ResidentMB)
			if r.HalfOpenCPU > 0 {
				fmt.Fprintf(out, "Half-open sweep: %.3f s CPU per sweep, planned every %.1f s, %.3f of the CPU budget (included in the dumps' share above).\n",
					r.HalfOpenCPU, r.HalfOpenIntvl, r.HalfOpenShare)
			}
		}
	}
	return nil
}
