//go:build linux

package procnet

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// connectClosed makes one connect attempt to a closed loopback port from
// the calling thread's namespace: Tcp ActiveOpens rises by one.
func connectClosed() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}})
	if !errors.Is(err, unix.ECONNREFUSED) {
		return errors.New("connect to a closed port did not fail with ECONNREFUSED: " + errString(err))
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TestHeldReadsFollowTheirNamespace holds a new namespace's net files from
// a thread inside it, then reads them from the test's own thread (the
// agent's namespace): they describe the new namespace, afresh at every
// read.
func TestHeldReadsFollowTheirNamespace(t *testing.T) {
	_, path := newNetns(t)
	r := NewReader("")
	t.Cleanup(func() { r.Release() })
	var inside Counters
	if err := inNetns(t, path, func() error {
		if err := r.Hold(); err != nil {
			return err
		}
		if err := connectClosed(); err != nil {
			return err
		}
		return r.ReadSNMP(&inside)
	}); err != nil {
		t.Fatal(err)
	}
	if !r.Held() {
		t.Fatal("Held() is false after Hold succeeded")
	}
	if inside.ActiveOpens != 1 {
		t.Fatalf("ActiveOpens read inside the new namespace = %d, want 1", inside.ActiveOpens)
	}
	// From this thread, outside the namespace: still the namespace's
	// counters, and fresh ones.
	if err := inNetns(t, path, connectClosed); err != nil {
		t.Fatal(err)
	}
	var outside Counters
	if err := r.ReadSNMP(&outside); err != nil {
		t.Fatal(err)
	}
	if outside.ActiveOpens != 2 {
		t.Fatalf("ActiveOpens read through the held file from outside = %d, want 2 (the namespace's, regenerated)", outside.ActiveOpens)
	}
	var c Counters
	if err := r.ReadNetstat(&c); err != nil {
		t.Fatal(err)
	}
	if !c.Present.Has(FieldListenOverflows) {
		t.Fatalf("netstat through the held file lacks ListenOverflows: present %b", c.Present)
	}
	var s Sockstat
	if err := r.ReadSockstat(&s); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Get(SockstatTCPInUse); !ok || v != 0 {
		t.Fatalf("sockstat TCP inuse through the held file = %d (present %v), want 0 in a new namespace", v, ok)
	}
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	if r.Held() {
		t.Fatal("Held() is true after Release")
	}
}

// TestHoldRefusesPlainTrees: a --path.procfs tree that is not procfs is
// not held, so that files replaced in it are seen; reads go on working.
func TestHoldRefusesPlainTrees(t *testing.T) {
	root := t.TempDir()
	net := filepath.Join(root, "thread-self", "net")
	if err := os.MkdirAll(net, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(net, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("netstat", "TcpExt: ListenOverflows\nTcpExt: 1\n")
	write("snmp", "Tcp: ActiveOpens\nTcp: 3\n")
	write("sockstat", "TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 1\n")
	r := NewReader(root)
	if err := r.Hold(); !errors.Is(err, ErrNotProcfs) {
		t.Fatalf("Hold on a plain tree: %v, want ErrNotProcfs", err)
	}
	if r.Held() {
		t.Fatal("Held() after a refused Hold")
	}
	// Replaced by rename: a new inode, which only reopening sees.
	tmp := filepath.Join(net, "snmp.new")
	if err := os.WriteFile(tmp, []byte("Tcp: ActiveOpens\nTcp: 4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(net, "snmp")); err != nil {
		t.Fatal(err)
	}
	var c Counters
	if err := r.ReadSNMP(&c); err != nil {
		t.Fatal(err)
	}
	if c.ActiveOpens != 4 {
		t.Fatalf("ActiveOpens = %d, want 4 from the replaced file", c.ActiveOpens)
	}
}
