//go:build linux

package procnet

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReaderThisMachine reads the real files of this machine and checks
// them against an independent read and against sockets the test opens.
func TestReaderThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/thread-self/net/netstat"); err != nil {
		t.Skipf("no procfs with thread-self: %v", err)
	}
	r := NewReader("")
	var before Counters
	if err := r.ReadCounters(&before); err != nil {
		t.Fatal(err)
	}
	for _, f := range Fields() {
		if !before.Present.Has(f) {
			// Every field exists since Linux 4.x; this kernel is newer.
			t.Errorf("%v missing on %s", f, unameRelease())
		}
	}

	// Open a loopback connection: CurrEstab counts both ends and
	// ActiveOpens/PassiveOpens move.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sv.Close()

	var after Counters
	if err := r.ReadCounters(&after); err != nil {
		t.Fatal(err)
	}
	if after.CurrEstab < 2 {
		t.Errorf("CurrEstab = %d with an open loopback connection", after.CurrEstab)
	}
	if after.ActiveOpens < before.ActiveOpens+1 || after.PassiveOpens < before.PassiveOpens+1 {
		t.Errorf("ActiveOpens %d->%d, PassiveOpens %d->%d: want both to grow",
			before.ActiveOpens, after.ActiveOpens, before.PassiveOpens, after.PassiveOpens)
	}
	for _, f := range Fields() {
		b, _ := before.Get(f)
		a, _ := after.Get(f)
		if f != FieldCurrEstab && a < b {
			t.Errorf("counter %v went backwards: %d -> %d", f, b, a)
		}
	}

	var s Sockstat
	if err := r.ReadSockstat(&s); err != nil {
		t.Fatal(err)
	}
	// The listener and both ends are in use; alloc is host-wide so at least
	// as large.
	if s.TCPInUse < 3 || s.TCPAlloc < s.TCPInUse || s.TCPOrphan < 0 || s.TCPTimeWait < 0 {
		t.Errorf("sockstat implausible: %+v", s)
	}

	var sc Sysctls
	if err := r.ReadSysctls(&sc); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 || f[0] != strconv.Itoa(int(sc.PortRange.Low)) || f[1] != strconv.Itoa(int(sc.PortRange.High)) {
		t.Errorf("port range %v, file says %q", sc.PortRange, raw)
	}
	for _, k := range IntSysctls() {
		raw, err := os.ReadFile("/proc/sys/" + k.Path())
		if err != nil {
			t.Fatal(err)
		}
		v, _ := sc.Int(k)
		if strings.TrimSpace(string(raw)) != strconv.FormatInt(v, 10) {
			t.Errorf("%v = %d, file says %q", k, v, raw)
		}
	}
	if sc.Somaxconn <= 0 || sc.TCPMaxSynBacklog <= 0 || sc.TCPFinTimeout <= 0 {
		t.Errorf("sysctls implausible: %+v", sc)
	}
	n, ok := sc.UsablePorts()
	if !ok || n < 0 || n > sc.PortRange.Size() {
		t.Errorf("usable ports %d of %d", n, sc.PortRange.Size())
	}
	t.Logf("kernel %s: CurrEstab %d, TCP inuse %d tw %d, port range %v (%d usable), somaxconn %d",
		unameRelease(), after.CurrEstab, s.TCPInUse, s.TCPTimeWait, sc.PortRange, n, sc.Somaxconn)
}

func unameRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// TestReaderPermissionDenied checks that an unreadable file yields an error
// satisfying errors.Is(err, fs.ErrPermission) that names the file, and
// that the other files are still read.
func TestReaderPermissionDenied(t *testing.T) {
	root := copyTree(t)
	openUp(t, root)
	sockstat := filepath.Join(root, "thread-self", "net", "sockstat")
	fin := filepath.Join(root, "sys", "net", "ipv4", "tcp_fin_timeout")
	for _, p := range []string{sockstat, fin} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := asUser(t, 65534, func() error {
		r := NewReader(root)
		var s Sockstat
		err := r.ReadSockstat(&s)
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), sockstat) {
			return fmt.Errorf("ReadSockstat err = %w, want ErrPermission naming %s", err, sockstat)
		}
		if !s.Present.Has(SockstatTCP6InUse) || s.Present.Has(SockstatTCPInUse) {
			return fmt.Errorf("sockstat6 should still be read: %+v", s)
		}
		var sc Sysctls
		err = r.ReadSysctls(&sc)
		if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), fin) {
			return fmt.Errorf("ReadSysctls err = %w", err)
		}
		if sc.Present.Has(SysctlTCPFinTimeout) || !sc.Present.Has(SysctlSomaxconn) {
			return fmt.Errorf("sysctls %+v", sc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReaderNetns shows that a thread setns'd into another network
// namespace reads that namespace's sysctls and counters, while the rest of
// the process keeps reading the host's.
func TestReaderNetns(t *testing.T) {
	name, nsPath := newNetns(t)
	host := NewReader("")
	var hostSc Sysctls
	if err := host.ReadSysctls(&hostSc); err != nil {
		t.Fatal(err)
	}
	// Pick a range that differs from the host's.
	want := PortRange{40000, 40100}
	if hostSc.PortRange == want {
		want = PortRange{41000, 41100}
	}
	// Configure the namespace with ip(8), independently of this package.
	script := fmt.Sprintf("echo '%d %d' > /proc/sys/net/ipv4/ip_local_port_range && echo 40010-40019,41010-41019,50000 > /proc/sys/net/ipv4/ip_local_reserved_ports",
		want.Low, want.High)
	if out, err := exec.Command("ip", "netns", "exec", name, "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("configuring %s: %v: %s", name, err, out)
	}

	var nsSc Sysctls
	var nsSock Sockstat
	var nsCounters Counters
	err := inNetns(t, nsPath, func() error {
		r := NewReader("")
		// tcp_max_orphans is host-wide: only the initial namespace shows it.
		err := r.ReadSysctls(&nsSc)
		orphans := "/proc/sys/net/ipv4/tcp_max_orphans"
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), orphans) {
			return fmt.Errorf("ReadSysctls in namespace: %w, want only %s missing", err, orphans)
		}
		if wantSet := SysctlSet(1<<numSysctls-1) &^ (1 << SysctlTCPMaxOrphans); nsSc.Present != wantSet {
			return fmt.Errorf("namespace sysctls present %b", nsSc.Present)
		}
		// A listener opened on this thread lives in the namespace.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Listen(fd, 8); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if err := r.ReadSockstat(&nsSock); err != nil {
			return err
		}
		return r.ReadCounters(&nsCounters)
	})
	if err != nil {
		t.Fatal(err)
	}
	if nsSc.PortRange != want {
		t.Errorf("namespace port range %v, want %v", nsSc.PortRange, want)
	}
	if n, ok := nsSc.UsablePorts(); !ok || n != want.Size()-10 {
		t.Errorf("namespace usable ports %d (%v), want %d", n, nsSc.ReservedPorts, want.Size()-10)
	}
	// A fresh namespace holds exactly the one listener and no connections.
	if nsSock.TCPInUse != 1 || nsSock.TCPTimeWait != 0 {
		t.Errorf("namespace sockstat %+v, want inuse 1, tw 0", nsSock)
	}
	if nsCounters.CurrEstab != 0 || nsCounters.ActiveOpens != 0 || nsCounters.Present != 1<<numFields-1 {
		t.Errorf("namespace counters %+v, want fresh zeros", nsCounters)
	}

	// The host, read from this goroutine, is unchanged.
	var again Sysctls
	if err := host.ReadSysctls(&again); err != nil {
		t.Fatal(err)
	}
	if again.PortRange != hostSc.PortRange || again.PortRange == want {
		t.Errorf("host port range %v after namespace read, was %v", again.PortRange, hostSc.PortRange)
	}
	t.Logf("host %v, namespace %s %v", again.PortRange, name, nsSc.PortRange)
}

// openUp makes root and the directories above it up to the temporary
// directory searchable by other users, for tests that drop the fsuid.
func openUp(t *testing.T, root string) {
	t.Helper()
	for d := root; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chmod(p, 0o755)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSockstatOrphanIsHostWide backs the Sockstat documentation: an orphan
// created in the host namespace shows in the orphan count of a fresh
// namespace, unlike inuse and tw.
func TestSockstatOrphanIsHostWide(t *testing.T) {
	_, nsPath := newNetns(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// The server never reads: fill both buffers, then close the client.
	// It becomes an orphan with unsent data until the server goes away.
	chunk := make([]byte, 64<<10)
	if err := cl.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if _, err := cl.Write(chunk); err != nil {
			break
		}
	}
	cl.Close()
	defer sv.Close()

	var host, ns Sockstat
	if err := NewReader("").ReadSockstat(&host); err != nil {
		t.Fatal(err)
	}
	if host.TCPOrphan < 1 {
		t.Skipf("no orphan created (sockstat %+v)", host)
	}
	err = inNetns(t, nsPath, func() error { return NewReader("").ReadSockstat(&ns) })
	if err != nil {
		t.Fatal(err)
	}
	if ns.TCPOrphan < 1 || ns.TCPInUse != 0 {
		t.Errorf("fresh namespace sockstat %+v: want the host's orphan counted and no sockets in use", ns)
	}
}
