package procnet

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyTree copies testdata/proc into a fresh temporary proc root.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", "proc")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestReaderFakeRoot(t *testing.T) {
	r := NewReader(filepath.Join("testdata", "proc"))
	var c Counters
	if err := r.ReadCounters(&c); err != nil {
		t.Fatal(err)
	}
	if c.Present != 1<<numFields-1 || c.OutRsts != 2 || c.ActiveOpens != 36 {
		t.Errorf("counters %+v", c)
	}
	var s Sockstat
	if err := r.ReadSockstat(&s); err != nil {
		t.Fatal(err)
	}
	if s.Present != 1<<numSockstatFields-1 || s.TCPInUse != 1 || s.TCPTimeWait != 2 {
		t.Errorf("sockstat %+v", s)
	}
	var sc Sysctls
	if err := r.ReadSysctls(&sc); err != nil {
		t.Fatal(err)
	}
	want := Sysctls{
		PortRange: PortRange{32768, 60999}, ReservedPorts: []PortRange{},
		TCPTWReuse: 2, TCPMaxTWBuckets: 131072, Somaxconn: 4096, TCPMaxSynBacklog: 2048,
		TCPSyncookies: 1, TCPMaxOrphans: 131072, TCPFinTimeout: 60,
		TCPKeepaliveTime: 7200, TCPKeepaliveIntvl: 75, TCPKeepaliveProbes: 9, Present: 1<<numSysctls - 1,
	}
	if sc.PortRange != want.PortRange || len(sc.ReservedPorts) != 0 || sc.TCPTWReuse != want.TCPTWReuse ||
		sc.TCPMaxTWBuckets != want.TCPMaxTWBuckets || sc.Somaxconn != want.Somaxconn ||
		sc.TCPMaxSynBacklog != want.TCPMaxSynBacklog || sc.TCPSyncookies != want.TCPSyncookies ||
		sc.TCPMaxOrphans != want.TCPMaxOrphans || sc.TCPFinTimeout != want.TCPFinTimeout || sc.Present != want.Present ||
		sc.TCPKeepaliveTime != want.TCPKeepaliveTime || sc.TCPKeepaliveIntvl != want.TCPKeepaliveIntvl || sc.TCPKeepaliveProbes != want.TCPKeepaliveProbes {
		t.Errorf("sysctls %+v, want %+v", sc, want)
	}
	if n, ok := sc.UsablePorts(); !ok || n != 28232 {
		t.Errorf("usable ports %d %v", n, ok)
	}
}

func TestReaderMissingFiles(t *testing.T) {
	root := copyTree(t)
	netstat := filepath.Join(root, "thread-self", "net", "netstat")
	if err := os.Remove(netstat); err != nil {
		t.Fatal(err)
	}
	somaxconn := filepath.Join(root, "sys", "net", "core", "somaxconn")
	if err := os.Remove(somaxconn); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "thread-self", "net", "sockstat6")); err != nil {
		t.Fatal(err)
	}
	r := NewReader(root)

	var c Counters
	err := r.ReadCounters(&c)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), netstat) {
		t.Fatalf("ReadCounters err = %v, want ErrNotExist naming %s", err, netstat)
	}
	if c.Present.Has(FieldListenOverflows) || !c.Present.Has(FieldOutRsts) || c.OutRsts != 2 {
		t.Errorf("snmp fields should survive a missing netstat: %+v", c)
	}

	var sc Sysctls
	err = r.ReadSysctls(&sc)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), somaxconn) {
		t.Fatalf("ReadSysctls err = %v", err)
	}
	if sc.Present.Has(SysctlSomaxconn) || !sc.Present.Has(SysctlTCPMaxSynBacklog) || sc.TCPMaxSynBacklog != 2048 {
		t.Errorf("sysctls %+v", sc)
	}

	// A missing sockstat6 means IPv6 is off: not an error.
	var s Sockstat
	if err := r.ReadSockstat(&s); err != nil {
		t.Fatalf("ReadSockstat without sockstat6: %v", err)
	}
	if s.Present.Has(SockstatTCP6InUse) || !s.Present.Has(SockstatTCPInUse) {
		t.Errorf("sockstat %+v", s)
	}
}

func TestReaderParseErrorNamesFile(t *testing.T) {
	root := copyTree(t)
	snmp := filepath.Join(root, "thread-self", "net", "snmp")
	if err := os.WriteFile(snmp, []byte("Tcp: CurrEstab OutRsts\nTcp: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pr := filepath.Join(root, "sys", "net", "ipv4", "ip_local_port_range")
	if err := os.WriteFile(pr, []byte("60999 32768\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewReader(root)
	var c Counters
	err := r.ReadCounters(&c)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.File != snmp || !errors.Is(err, ErrFieldCount) {
		t.Fatalf("err = %v, want ErrFieldCount in %s", err, snmp)
	}
	if c.Present.Has(FieldCurrEstab) || !c.Present.Has(FieldListenDrops) {
		t.Errorf("after snmp parse error: present %b", c.Present)
	}
	var sc Sysctls
	sc.PortRange = PortRange{1, 2}
	sc.Present = sc.Present.Add(SysctlIPLocalPortRange)
	err = r.ReadSysctls(&sc)
	if !errors.As(err, &pe) || pe.File != pr || !errors.Is(err, ErrValue) {
		t.Fatalf("err = %v", err)
	}
	if sc.Present.Has(SysctlIPLocalPortRange) || sc.PortRange != (PortRange{}) || !sc.Present.Has(SysctlTCPFinTimeout) {
		t.Errorf("sysctls after bad port range: %+v", sc)
	}
	if _, ok := sc.UsablePorts(); ok {
		t.Error("UsablePorts ok without a port range")
	}
}

func TestReaderLargeFile(t *testing.T) {
	root := copyTree(t)
	// Many unused sections: more than the initial buffer, below the cap.
	var b strings.Builder
	for i := 0; i < 2000; i++ {
		b.WriteString("Ip: Forwarding DefaultTTL\nIp: 1 64\n")
	}
	b.WriteString("Tcp: OutRsts\nTcp: 77\n")
	if err := os.WriteFile(filepath.Join(root, "thread-self", "net", "snmp"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewReader(root)
	var c Counters
	if err := r.ReadCounters(&c); err != nil || c.OutRsts != 77 {
		t.Fatalf("err %v, OutRsts %d", err, c.OutRsts)
	}
	// Beyond the cap: refused with an error, not read into memory.
	big := make([]byte, maxFileSize+10)
	if err := os.WriteFile(filepath.Join(root, "thread-self", "net", "snmp"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadSNMP(&c); err == nil || c.Present.Has(FieldOutRsts) {
		t.Fatalf("oversized file: err %v, present %b", err, c.Present)
	}
}

func TestReaderAllocations(t *testing.T) {
	r := NewReader(filepath.Join("testdata", "proc"))
	var c Counters
	var s Sockstat
	var sc Sysctls
	read := func() {
		if err := r.ReadCounters(&c); err != nil {
			t.Fatal(err)
		}
		if err := r.ReadSockstat(&s); err != nil {
			t.Fatal(err)
		}
		if err := r.ReadSysctls(&sc); err != nil {
			t.Fatal(err)
		}
	}
	read()
	allocs := testing.AllocsPerRun(20, read)
	// 16 files are opened (the three keepalive sysctls among them);
	// os.Open costs a few allocations each and parsing costs none.
	t.Logf("allocations per full read of 16 files: %.0f", allocs)
	if allocs > 16*4 {
		t.Errorf("%.0f allocations per read, want at most %d", allocs, 16*4)
	}
	parse := testing.AllocsPerRun(50, func() {
		var c Counters
		_ = ParseCounters(readTestdataCached, &c)
	})
	if parse != 0 {
		t.Errorf("ParseCounters allocates %.0f times", parse)
	}
}

var readTestdataCached = func() []byte {
	b, err := os.ReadFile(filepath.Join("testdata", "proc", "thread-self", "net", "netstat"))
	if err != nil {
		panic(err)
	}
	return b
}()

func BenchmarkReadCounters(b *testing.B) {
	r := NewReader("")
	var c Counters
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadCounters(&c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCounters(b *testing.B) {
	data := readTestdataCached
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var c Counters
		if err := ParseCounters(data, &c); err != nil {
			b.Fatal(err)
		}
	}
}
