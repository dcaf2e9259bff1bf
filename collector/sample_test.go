package collector

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tcpstate/tcpstate-exporter/collector/detect"
	"github.com/tcpstate/tcpstate-exporter/diag"
	"github.com/tcpstate/tcpstate-exporter/diag/procnet"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// procFiles are the files of a fake proc root, relative to it.
type procFiles map[string]string

func defaultProcFiles() procFiles {
	return procFiles{
		"thread-self/net/netstat": "TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows ListenDrops TCPReqQFullDoCookies TCPReqQFullDrop TCPTimeWaitOverflow TCPAbortOnTimeout TCPAbortOnData TCPAbortOnClose\n" +
			"TcpExt: 11 12 13 14 15 16 17 18 19 20 21\n",
		"thread-self/net/snmp": "Tcp: RtoAlgorithm ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab OutRsts\n" +
			"Tcp: 1 30 31 32 33 2 34\n",
		"thread-self/net/sockstat":             "sockets: used 13\nTCP: inuse 5 orphan 7 tw 3 alloc 9 mem 1\n",
		"thread-self/net/sockstat6":            "TCP6: inuse 2\n",
		"sys/net/ipv4/ip_local_port_range":     "40000\t40999\n",
		"sys/net/ipv4/ip_local_reserved_ports": "40990-40999\n",
		"sys/net/ipv4/tcp_tw_reuse":            "0\n",
		"sys/net/ipv4/tcp_max_tw_buckets":      "5000\n",
		"sys/net/core/somaxconn":               "4096\n",
		"sys/net/ipv4/tcp_max_syn_backlog":     "1024\n",
		"sys/net/ipv4/tcp_syncookies":          "1\n",
		"sys/net/ipv4/tcp_max_orphans":         "8192\n",
		"sys/net/ipv4/tcp_fin_timeout":         "60\n",
		"sys/net/ipv4/tcp_keepalive_time":      "7200\n",
		"sys/net/ipv4/tcp_keepalive_intvl":     "75\n",
		"sys/net/ipv4/tcp_keepalive_probes":    "9\n",
	}
}

func writeProc(t *testing.T, files procFiles) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// noLookup fails the test if the sampler looks owners up.
func noLookup(t *testing.T) OwnerLookup {
	return func(inodes []uint64, _ time.Duration) (map[uint64][]procnet.Process, bool, error) {
		t.Errorf("unexpected owner lookup of %v", inodes)
		return nil, true, nil
	}
}

func synRecv(local netip.Addr, port uint16, src netip.Addr) diag.Socket {
	f := diag.AFInet
	if local.Is6() {
		f = diag.AFInet6
	}
	return sock(f, diag.SynRecv, local, port, src, 40000)
}

func TestSynRecvSources(t *testing.T) {
	srv := netip.MustParseAddr("198.51.100.1")
	socks := []diag.Socket{listener(diag.AFInet, v4any, 80, 0, 128), listener(diag.AFInet6, v6any, 443, 0, 128)}
	// 300 sources spread over three /24s: 200, 70 and 30 sockets, one of
	// them twice; and IPv6 sources in two /64s.
	for i := range 300 {
		var src netip.Addr
		switch {
		case i < 200:
			src = netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		case i < 270:
			src = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		default:
			src = netip.AddrFrom4([4]byte{198, 18, 7, byte(i)})
		}
		socks = append(socks, synRecv(srv, 80, src))
	}
	socks = append(socks, synRecv(srv, 80, netip.AddrFrom4([4]byte{203, 0, 113, 5})))
	for i := range 3 {
		socks = append(socks, synRecv(netip.MustParseAddr("2001:db8::1"), 443, netip.MustParseAddr(fmt.Sprintf("2001:db8:a:b::%d", i+1))))
	}
	socks = append(socks, synRecv(netip.MustParseAddr("2001:db8::1"), 443, netip.MustParseAddr("2001:db8:a:c::1")))

	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), Logger: quiet, LookupOwners: noLookup(t)})
	smp, err := s.Sample(Rare)
	if err != nil {
		t.Fatal(err)
	}
	l4, l6 := smp.Listeners[0], smp.Listeners[1]
	if l4.SynRecv != 301 || l4.SynSources != 300 || l4.SynSourcesCapped {
		t.Errorf("ipv4 listener: syn_recv %d sources %d capped %v, want 301 300 false", l4.SynRecv, l4.SynSources, l4.SynSourcesCapped)
	}
	if got := fmt.Sprint(l4.TopSources); got != "[{203.0.113.0/24 201} {192.0.2.0/24 70} {198.18.7.0/24 30}]" {
		t.Errorf("ipv4 top sources %s", got)
	}
	if got := fmt.Sprint(l6.TopSources); l6.SynSources != 4 || got != "[{2001:db8:a:b::/64 3} {2001:db8:a:c::/64 1}]" {
		t.Errorf("ipv6 sources %d, top %s", l6.SynSources, got)
	}
}

func TestSynRecvSourcesCapped(t *testing.T) {
	srv := netip.MustParseAddr("198.51.100.1")
	socks := []diag.Socket{listener(diag.AFInet, srv, 80, 0, 65535)}
	n := maxSynSources + 500
	for i := range n {
		socks = append(socks, synRecv(srv, 80, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})))
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), Logger: quiet, LookupOwners: noLookup(t)})
	smp, err := s.Sample(Rare)
	if err != nil {
		t.Fatal(err)
	}
	l := smp.Listeners[0]
	if l.SynRecv != uint64(n) || l.SynSources != maxSynSources || !l.SynSourcesCapped || len(l.TopSources) != topSources {
		t.Errorf("syn_recv %d sources %d capped %v top %d; want %d %d true %d", l.SynRecv, l.SynSources, l.SynSourcesCapped, len(l.TopSources), n, maxSynSources, topSources)
	}
	if l.TopSources[0].Count != 256 {
		t.Errorf("top prefix holds %d, want 256", l.TopSources[0].Count)
	}
}

func TestDestinations(t *testing.T) {
	proc := writeProc(t, defaultProcFiles())
	lo := v4lo
	db := netip.MustParseAddr("10.0.0.9")
	me := netip.MustParseAddr("10.0.0.2")
	socks := []diag.Socket{
		listener(diag.AFInet, v4any, 8080, 0, 128),
		listener(diag.AFInet, v4any, 40500, 0, 128), // a listener inside the ephemeral range
		// Inbound: local port is a listening port.
		sock(diag.AFInet, diag.Established, lo, 8080, lo, 40001),
		sock(diag.AFInet, diag.Established, me, 40500, db, 5555),
		// Outbound to the database: 3 established, 2 TIME_WAIT, 1 CLOSE_WAIT, 1 SYN_SENT.
		sock(diag.AFInet, diag.Established, me, 40010, db, 5432),
		sock(diag.AFInet, diag.Established, me, 40011, db, 5432),
		sock(diag.AFInet, diag.Established, me, 40012, db, 5432),
		sock(diag.AFInet, diag.TimeWait, me, 40013, db, 5432),
		sock(diag.AFInet, diag.TimeWait, me, 40014, db, 5432),
		sock(diag.AFInet, diag.CloseWait, me, 40015, db, 5432),
		sock(diag.AFInet, diag.SynSent, me, 40016, db, 5432),
		// Outbound to loopback, one socket; and one from outside the range.
		sock(diag.AFInet, diag.Established, lo, 40001, lo, 8080),
		sock(diag.AFInet, diag.Established, me, 1234, db, 5432),
		// IPv6, v4-mapped addresses are unmapped.
		sock(diag.AFInet6, diag.TimeWait, netip.MustParseAddr("::ffff:10.0.0.2"), 40020, netip.MustParseAddr("::ffff:10.0.0.9"), 80),
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), ProcRoot: proc, Logger: quiet, LookupOwners: noLookup(t)})
	rare, err := s.Sample(Rare)
	if err != nil {
		t.Fatal(err)
	}
	if rare.Destinations != nil {
		t.Errorf("a rare sample counted destinations: %v", rare.Destinations)
	}
	smp, err := s.Sample(Full)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(smp.Destinations)
	want := "[{{ipv4 10.0.0.2 10.0.0.9 5432} 7 2} {{ipv4 127.0.0.1 127.0.0.1 8080} 1 0} {{ipv6 10.0.0.2 10.0.0.9 80} 1 1}]"
	if got != want {
		t.Errorf("destinations\n got %s\nwant %s", got, want)
	}

	e := NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{MaxDestinations: 1})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	wantM := `
# HELP tcpstate_destination_local_ports_used Outbound sockets (TIME_WAIT included) holding a local port towards a destination, from the latest full sample.
# TYPE tcpstate_destination_local_ports_used gauge
tcpstate_destination_local_ports_used{family="ipv4",local_address="10.0.0.2",remote_address="10.0.0.9",remote_port="5432"} 7
tcpstate_destination_local_ports_used{family="ipv4",local_address="other",remote_address="other",remote_port="other"} 1
tcpstate_destination_local_ports_used{family="ipv6",local_address="other",remote_address="other",remote_port="other"} 1
# HELP tcpstate_destination_time_wait Outbound sockets towards a destination that are in TIME_WAIT, from the latest full sample.
# TYPE tcpstate_destination_time_wait gauge
tcpstate_destination_time_wait{family="ipv4",local_address="10.0.0.2",remote_address="10.0.0.9",remote_port="5432"} 2
tcpstate_destination_time_wait{family="ipv4",local_address="other",remote_address="other",remote_port="other"} 0
tcpstate_destination_time_wait{family="ipv6",local_address="other",remote_address="other",remote_port="other"} 1
# HELP tcpstate_local_ports_usable Local ports connect() can pick: the size of net.ipv4.ip_local_port_range minus net.ipv4.ip_local_reserved_ports.
# TYPE tcpstate_local_ports_usable gauge
tcpstate_local_ports_usable 990
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantM), "tcpstate_destination_local_ports_used", "tcpstate_destination_time_wait", "tcpstate_local_ports_usable"); err != nil {
		t.Error(err)
	}
	wantF := `
# HELP tcpstate_folded_series Entries folded into an "other" series in the latest sample because a --collector.*.max limit was reached.
# TYPE tcpstate_folded_series gauge
tcpstate_folded_series{kind="clients"} 0
tcpstate_folded_series{kind="closewait"} 0
tcpstate_folded_series{kind="destinations"} 2
tcpstate_folded_series{kind="listeners"} 0
tcpstate_folded_series{kind="peers"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantF), "tcpstate_folded_series"); err != nil {
		t.Error(err)
	}
}

// TestDestinationsWithoutPortRange: when ip_local_port_range cannot be
// read, every non-listening local port counts as outbound.
func TestDestinationsWithoutPortRange(t *testing.T) {
	files := defaultProcFiles()
	delete(files, "sys/net/ipv4/ip_local_port_range")
	proc := writeProc(t, files)
	db := netip.MustParseAddr("10.0.0.9")
	me := netip.MustParseAddr("10.0.0.2")
	socks := []diag.Socket{
		listener(diag.AFInet, v4any, 8080, 0, 128),
		sock(diag.AFInet, diag.Established, me, 8080, db, 5555),
		sock(diag.AFInet, diag.Established, me, 1234, db, 5432),
		sock(diag.AFInet, diag.Established, me, 50000, db, 5432),
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), ProcRoot: proc, Logger: quiet, LookupOwners: noLookup(t)})
	smp, err := s.Sample(Full)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(smp.Destinations); got != "[{{ipv4 10.0.0.2 10.0.0.9 5432} 2 0}]" {
		t.Errorf("destinations %s", got)
	}
	if _, ok := smp.Procfs.Sysctls.UsablePorts(); ok {
		t.Error("usable ports computed without the port range")
	}
}

func TestKernelValuesAndErrors(t *testing.T) {
	files := defaultProcFiles()
	delete(files, "sys/net/ipv4/tcp_max_orphans") // as in a pod's namespace: absent, not an error
	files["sys/net/ipv4/tcp_tw_reuse"] = "lots\n"
	files["thread-self/net/snmp"] = "Tcp: broken\n"
	proc := writeProc(t, files)
	var entered int
	s := NewSampler(SamplerOptions{Dial: fakeDial(nil), ProcRoot: proc, Logger: quiet, LookupOwners: noLookup(t),
		InNetns: func(fn func() error) error { entered++; return fn() }})
	for range 2 {
		if _, err := s.Sample(Rare); err != nil {
			t.Fatal(err)
		}
	}
	if entered != 2 {
		t.Errorf("InNetns called %d times for 2 samples", entered)
	}
	k := s.View(time.Now()).Latest.Procfs
	if v, ok := k.Counters.Get(procnet.FieldListenOverflows); !ok || v != 14 {
		t.Errorf("ListenOverflows %d %v", v, ok)
	}
	if _, ok := k.Counters.Get(procnet.FieldOutRsts); ok {
		t.Error("OutRsts present though snmp is broken")
	}
	if _, ok := k.Sysctls.Int(procnet.SysctlTCPMaxOrphans); ok {
		t.Error("tcp_max_orphans present though missing")
	}
	if v, ok := k.Sysctls.Int(procnet.SysctlTCPMaxTWBuckets); !ok || v != 5000 {
		t.Errorf("tcp_max_tw_buckets %d %v", v, ok)
	}
	e := NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	want := `
# HELP tcpstate_kernel_read_errors_total Failed reads of a kernel file (procfs net file, sysctl, or netns when the namespace could not be entered); the values that depend on it are missing.
# TYPE tcpstate_kernel_read_errors_total counter
tcpstate_kernel_read_errors_total{file="net.core.somaxconn"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.ip_local_port_range"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.ip_local_reserved_ports"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_fin_timeout"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_keepalive_intvl"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_keepalive_probes"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_keepalive_time"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_max_orphans"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_max_syn_backlog"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_max_tw_buckets"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_syncookies"} 0
tcpstate_kernel_read_errors_total{file="net.ipv4.tcp_tw_reuse"} 2
tcpstate_kernel_read_errors_total{file="netns"} 0
tcpstate_kernel_read_errors_total{file="netstat"} 0
tcpstate_kernel_read_errors_total{file="snmp"} 2
tcpstate_kernel_read_errors_total{file="sockstat"} 0
tcpstate_kernel_read_errors_total{file="sockstat6"} 0
# HELP tcpstate_netstat_listen_overflows_total Kernel TCP counter TcpExt:ListenOverflows of the namespace (/proc/net/netstat).
# TYPE tcpstate_netstat_listen_overflows_total counter
tcpstate_netstat_listen_overflows_total 14
# HELP tcpstate_netstat_reqq_full_drop_total Kernel TCP counter TcpExt:TCPReqQFullDrop of the namespace (/proc/net/netstat).
# TYPE tcpstate_netstat_reqq_full_drop_total counter
tcpstate_netstat_reqq_full_drop_total 17
# HELP tcpstate_orphan_sockets Orphaned TCP sockets (sockstat; host-wide).
# TYPE tcpstate_orphan_sockets gauge
tcpstate_orphan_sockets 7
# HELP tcpstate_sysctl Values of the sysctls the detectors use.
# TYPE tcpstate_sysctl gauge
tcpstate_sysctl{name="net.core.somaxconn"} 4096
tcpstate_sysctl{name="net.ipv4.tcp_fin_timeout"} 60
tcpstate_sysctl{name="net.ipv4.tcp_keepalive_intvl"} 75
tcpstate_sysctl{name="net.ipv4.tcp_keepalive_probes"} 9
tcpstate_sysctl{name="net.ipv4.tcp_keepalive_time"} 7200
tcpstate_sysctl{name="net.ipv4.tcp_max_syn_backlog"} 1024
tcpstate_sysctl{name="net.ipv4.tcp_max_tw_buckets"} 5000
tcpstate_sysctl{name="net.ipv4.tcp_syncookies"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcpstate_kernel_read_errors_total",
		"tcpstate_netstat_listen_overflows_total", "tcpstate_netstat_reqq_full_drop_total", "tcpstate_orphan_sockets", "tcpstate_sysctl"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "tcpstate_netstat_out_rsts_total"); err != nil || n != 0 {
		t.Errorf("out_rsts exported from a broken snmp: %d series, err %v", n, err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}

	// A namespace that cannot be entered: the dump still runs, every kernel
	// value is absent, and the failure is counted once per sample.
	s2 := NewSampler(SamplerOptions{Dial: fakeDial(nil), ProcRoot: proc, Logger: quiet, LookupOwners: noLookup(t),
		InNetns: func(fn func() error) error { return errors.New("setns: operation not permitted") }})
	smp, err := s2.Sample(Full)
	if err != nil {
		t.Fatal(err)
	}
	if smp.Procfs.Counters.Present != 0 || smp.Procfs.Sysctls.Present != 0 || s2.View(time.Now()).ReadErrors[fileNetns] != 1 {
		t.Errorf("unenterable namespace: kernel %+v errors %v", smp.Procfs, s2.View(time.Now()).ReadErrors)
	}
}

// closeWaitSock is a CLOSE_WAIT socket with a cookie and an inode.
func closeWaitSock(local netip.Addr, lport uint16, remote netip.Addr, rport uint16, cookie uint64, inode uint32) diag.Socket {
	s := sock(diag.AFInet, diag.CloseWait, local, lport, remote, rport)
	s.Cookie, s.Inode = cookie, inode
	return s
}

func TestCloseWaitTracking(t *testing.T) {
	proc := writeProc(t, defaultProcFiles())
	me := netip.MustParseAddr("10.0.0.2")
	peer := netip.MustParseAddr("10.0.0.7")
	var socks []diag.Socket
	set := func(ss ...diag.Socket) { socks = ss }
	var lookups [][]uint64
	owners := map[uint64][]procnet.Process{
		101: {{PID: 4242, Comm: "leaky"}}, 102: {{PID: 4242, Comm: "leaky"}},
		201: {{PID: 77, Comm: "client"}},
	}
	cfg := detect.DefaultConfig()
	cfg.CloseWaitMinAge = 30 * time.Millisecond
	cfg.CloseWaitThreshold = 2
	s := NewSampler(SamplerOptions{
		Dial:     func() (*diag.Conn, error) { return fakeDial(socks)() },
		ProcRoot: proc, Logger: quiet, Detect: cfg,
		LookupOwners: func(inodes []uint64, _ time.Duration) (map[uint64][]procnet.Process, bool, error) {
			in := slices.Clone(inodes)
			slices.Sort(in)
			lookups = append(lookups, in)
			return owners, true, nil
		},
	})
	sample := func() *Sample {
		t.Helper()
		s.Close() // pick up the new socket list
		smp, err := s.Sample(Rare)
		if err != nil {
			t.Fatal(err)
		}
		return smp
	}
	listen := listener(diag.AFInet, v4any, 8080, 0, 128)
	set(listen,
		closeWaitSock(me, 8080, peer, 50001, 1, 101),
		closeWaitSock(me, 8080, peer, 50002, 2, 102),
		closeWaitSock(me, 40100, peer, 443, 3, 201), // outbound, ephemeral range
	)
	smp := sample()
	if len(lookups) != 0 {
		t.Fatalf("looked up young sockets: %v", lookups)
	}
	if got := fmt.Sprint(smp.CloseWait); got != "[{8080  [] 2 0 0s} {ephemeral  [] 1 0 0s}]" {
		t.Errorf("young groups %s", got)
	}
	time.Sleep(40 * time.Millisecond)
	// Socket 2 is gone (closed); socket 4 is new on the same port.
	set(listen,
		closeWaitSock(me, 8080, peer, 50001, 1, 101),
		closeWaitSock(me, 8080, peer, 50003, 4, 103),
		closeWaitSock(me, 40100, peer, 443, 3, 201),
	)
	smp = sample()
	if fmt.Sprint(lookups) != "[[101 201]]" {
		t.Errorf("lookups %v, want one of the two old sockets' inodes", lookups)
	}
	// The young socket 4 shares the port's command though not looked up.
	byPort := map[string]detect.CloseWaitGroup{}
	for _, g := range smp.CloseWait {
		byPort[g.Port] = g
	}
	if g := byPort["8080"]; g.Command != "leaky" || g.Count != 2 || g.Old != 1 || fmt.Sprint(g.PIDs) != "[4242]" || g.Oldest < 40*time.Millisecond {
		t.Errorf("port 8080 group %+v", g)
	}
	if g := byPort["ephemeral"]; g.Command != "client" || g.Count != 1 || g.Old != 1 {
		t.Errorf("ephemeral group %+v", g)
	}
	// Within the lookup interval no new lookup runs, even for new old sockets.
	time.Sleep(40 * time.Millisecond)
	smp = sample()
	if len(lookups) != 1 {
		t.Errorf("lookup ran again within %v: %v", lookupInterval, lookups)
	}
	for _, g := range smp.CloseWait {
		if g.Port == "8080" && g.Old != 2 {
			t.Errorf("port 8080 old %d, want 2", g.Old)
		}
	}
	// The leak detector sees the group.
	fs := s.Findings()
	var leak *detect.Finding
	for i := range fs {
		if fs[i].Alert == detect.AlertCloseWaitLeak && fs[i].Labels["port"] == "8080" {
			leak = &fs[i]
		}
	}
	if leak == nil || leak.Labels["command"] != "leaky" || leak.Evidence["pids"] != "4242" {
		t.Fatalf("no leak finding for port 8080: %v", fs)
	}
	// Metrics.
	e := NewExporter(func() []Target { return []Target{{Sampler: s}} }, ExporterOptions{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	want := `
# HELP tcpstate_close_wait_sockets CLOSE_WAIT sockets by local port ("ephemeral" for outbound ones) and owning command (empty until looked up).
# TYPE tcpstate_close_wait_sockets gauge
tcpstate_close_wait_sockets{command="client",port="ephemeral"} 1
tcpstate_close_wait_sockets{command="leaky",port="8080"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tcpstate_close_wait_sockets"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "tcpstate_close_wait_oldest_seconds"); err != nil || n != 2 {
		t.Errorf("oldest series %d, err %v", n, err)
	}
	// All closed: groups and the port memory are gone, the leak clears.
	set(listen)
	smp = sample()
	if len(smp.CloseWait) != 0 || len(s.dumps.agg.cw.m) != 0 || len(s.dumps.agg.cw.portCmd) != 0 {
		t.Errorf("after close: groups %v, tracked %d, ports %v", smp.CloseWait, len(s.dumps.agg.cw.m), s.dumps.agg.cw.portCmd)
	}
	for _, f := range s.Findings() {
		if f.Alert == detect.AlertCloseWaitLeak {
			t.Errorf("leak finding after close: %v", f)
		}
	}
}

func TestCloseWaitBounds(t *testing.T) {
	me := netip.MustParseAddr("10.0.0.2")
	var socks []diag.Socket
	for i := range 30 {
		// 30 listening ports with 1..30 CLOSE_WAIT sockets each.
		port := uint16(1000 + i)
		socks = append(socks, listener(diag.AFInet, v4any, port, 0, 128))
		for j := range i + 1 {
			socks = append(socks, closeWaitSock(me, port, v4lo, uint16(20000+j), uint64(i*100+j+1), uint32(i*100+j+1)))
		}
	}
	s := NewSampler(SamplerOptions{Dial: fakeDial(socks), Logger: quiet, LookupOwners: noLookup(t),
		MaxCloseWaitGroups: 10, MaxCloseWaitTracked: 400})
	smp, err := s.Sample(Rare)
	if err != nil {
		t.Fatal(err)
	}
	total := 30 * 31 / 2
	if smp.CloseWaitUntracked != uint64(total-400) {
		t.Errorf("untracked %d, want %d", smp.CloseWaitUntracked, total-400)
	}
	// The first 400 sockets in dump order are tracked: ports 1000-1026 in
	// full (378) and 22 of port 1027, 28 groups of which 18 fold.
	if len(smp.CloseWait) != 11 || smp.CloseWaitFolded != 18 {
		t.Fatalf("%d groups (folded %d), want 10 and other (18 folded)", len(smp.CloseWait), smp.CloseWaitFolded)
	}
	var sum uint64
	for _, g := range smp.CloseWait {
		sum += g.Count
	}
	last := smp.CloseWait[10]
	if last.Port != "other" || last.Command != "other" || sum != 400 {
		t.Errorf("last group %+v, sum %d, want other and 400", last, sum)
	}
	if smp.CloseWait[0].Count < smp.CloseWait[9].Count {
		t.Errorf("groups not sorted by count: %v", smp.CloseWait)
	}
}

func TestCloseWaitLookupBackoff(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tr := newCloseWaitTracker(10)
	tr.begin(t0)
	for c := range uint64(3) {
		s := closeWaitSock(v4lo, 8080, v4lo, uint16(50000+c), c+1, uint32(100+c))
		tr.see(&s)
	}
	var timeouts []time.Duration
	complete := false
	found := map[uint64][]procnet.Process{}
	lookup := func(inodes []uint64, timeout time.Duration) (map[uint64][]procnet.Process, bool, error) {
		timeouts = append(timeouts, timeout)
		return found, complete, nil
	}
	at := func(d time.Duration) { tr.resolve(t0.Add(d), time.Second, 250*time.Millisecond, lookup) }
	at(0) // too young
	at(2 * time.Second)
	at(12 * time.Second) // within the doubled interval after a scan cut short
	at(22 * time.Second)
	if fmt.Sprint(timeouts) != "[250ms 500ms]" {
		t.Fatalf("lookup timeouts %v, want [250ms 500ms]: skipped while young, doubled after a scan cut short", timeouts)
	}
	for _, e := range tr.m {
		if e.tried != 0 || e.resolved {
			t.Fatalf("a scan cut short marked a socket: %+v", e)
		}
	}
	// A complete scan finds one owner and resets the backoff; the others
	// wait lookupRetry.
	complete = true
	found[100] = []procnet.Process{{PID: 9, Comm: "srv"}}
	at(62 * time.Second)
	at(75 * time.Second)
	if fmt.Sprint(timeouts) != "[250ms 500ms 1s]" || tr.backoff != 0 {
		t.Fatalf("lookup timeouts %v (backoff %d)", timeouts, tr.backoff)
	}
	resolved, tried := 0, 0
	for _, e := range tr.m {
		if e.resolved {
			resolved++
		}
		if e.tried != 0 {
			tried++
		}
	}
	if resolved != 1 || tried != 2 {
		t.Errorf("resolved %d, tried %d; want 1 and 2", resolved, tried)
	}
	at(62*time.Second + lookupRetry)
	if len(timeouts) != 4 || timeouts[3] != 250*time.Millisecond {
		t.Errorf("retry after %v: lookups %v", lookupRetry, timeouts)
	}
}
