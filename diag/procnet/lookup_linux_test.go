//go:build linux

package procnet

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeProc lays out a proc root: pid -> descriptor links, and comm.
type fakePID struct {
	comm  string            // "" = no comm file
	fds   map[string]string // fd name -> link target; nil = no fd dir
	fdDir os.FileMode       // mode of the fd dir, 0 = 0755
}

func makeFakeProc(t *testing.T, pids map[int]fakePID) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range pids {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if p.comm != "" {
			if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(p.comm+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if p.fds == nil {
			continue
		}
		fdDir := filepath.Join(dir, "fd")
		if err := os.Mkdir(fdDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, target := range p.fds {
			if err := os.Symlink(target, filepath.Join(fdDir, name)); err != nil {
				t.Fatal(err)
			}
		}
		if p.fdDir != 0 {
			if err := os.Chmod(fdDir, p.fdDir); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Entries that are not processes.
	if err := os.Symlink("100", filepath.Join(root, "self")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "0123"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func sortedOwners(ps []Process) []Process {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b Process) int { return a.PID - b.PID })
	return ps
}

func TestLookupFakeProc(t *testing.T) {
	root := makeFakeProc(t, map[int]fakePID{
		100: {comm: "alpha", fds: map[string]string{"0": "/dev/null", "3": "socket:[1001]", "4": "socket:[1002]", "5": "socket:[1001]", "6": "pipe:[1001]"}},
		200: {comm: "beta", fds: map[string]string{"7": "socket:[1002]", "8": "socket:[1001]", "9": "anon_inode:[eventpoll]"}},
		300: {comm: "gone"},                                 // no fd dir: exited
		400: {fds: map[string]string{"3": "socket:[1003]"}}, // no comm: exited after the fd scan
		500: {comm: "other", fds: map[string]string{"3": "socket:[1004]", "4": "socket:[x]", "5": "socket:[]"}},
	})
	l := NewInodeLookup(root)

	// 9999 is never found, so every process is scanned.
	owners, st, err := l.Lookup([]uint64{1001, 1002, 1003, 1004, 9999, 1001}, LookupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]Process{
		1001: {{100, "alpha"}, {200, "beta"}},
		1002: {{100, "alpha"}, {200, "beta"}},
		1004: {{500, "other"}},
	}
	if len(owners) != len(want) {
		t.Errorf("owners %v, want %v", owners, want)
	}
	for ino, w := range want {
		if got := sortedOwners(owners[ino]); !slices.Equal(got, w) {
			t.Errorf("inode %d: owners %v, want %v", ino, got, w)
		}
	}
	if st.PIDsScanned != 5 || st.Vanished != 2 || st.Denied != 0 || st.Failed != 0 || st.Incomplete || st.FDsScanned != 12 {
		t.Errorf("stats %+v, want 5 pids, 12 fds, 2 vanished, complete", st)
	}

	// Without AllOwners the scan stops at the first process holding both,
	// in ascending process ID order: 100, the lowest.
	owners, st, err = l.Lookup([]uint64{1001, 1002}, LookupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first, scanned := Process{100, "alpha"}, 1
	if st.PIDsScanned != scanned || !slices.Equal(owners[1001], []Process{first}) || !slices.Equal(owners[1002], []Process{first}) || st.Incomplete {
		t.Errorf("early stop: owners %v, stats %+v; want only %v after %d pids", owners, st, first, scanned)
	}
	// With AllOwners it lists both holders.
	owners, st, err = l.Lookup([]uint64{1001, 1002}, LookupOptions{AllOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(owners[1001]) != 2 || len(owners[1002]) != 2 || st.PIDsScanned != 5 {
		t.Errorf("all owners: %v, stats %+v", owners, st)
	}

	// Hints are scanned first and only once.
	owners, st, err = l.Lookup([]uint64{1001, 1002}, LookupOptions{Hint: []int{999, 200, 999}})
	if err != nil {
		t.Fatal(err)
	}
	beta := []Process{{200, "beta"}}
	if st.PIDsScanned != 2 || st.Vanished != 1 || !slices.Equal(owners[1001], beta) || !slices.Equal(owners[1002], beta) {
		t.Errorf("hint: owners %v, stats %+v", owners, st)
	}
	owners, st, err = l.Lookup([]uint64{1001, 1002}, LookupOptions{Hint: []int{200}, AllOwners: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.PIDsScanned != 5 || len(owners[1001]) != 2 || owners[1001][0] != beta[0] {
		t.Errorf("hint with AllOwners: owners %v, stats %+v", owners, st)
	}

	// After resumes: processes above it first (500 holds 1004: one scan),
	// then the rest from the start (nothing above 500: 1001 is found in the
	// second pass).
	owners, st, err = l.Lookup([]uint64{1004}, LookupOptions{After: 400})
	if err != nil || st.PIDsScanned != 1 || st.LastPID != 500 || !slices.Equal(owners[1004], []Process{{500, "other"}}) {
		t.Errorf("after 400: owners %v, stats %+v, err %v", owners, st, err)
	}
	owners, st, err = l.Lookup([]uint64{1001}, LookupOptions{After: 500})
	if err != nil || len(owners[1001]) != 1 || st.Incomplete {
		t.Errorf("after 500: owners %v, stats %+v, err %v", owners, st, err)
	}
	// Lookups cut short after one process each, each resuming after the
	// last, reach every process in ascending order: 1004's owner (500) is
	// found by the fifth (without After every lookup would scan 100).
	var lasts []int
	found, after := -1, 0
	for i := range 5 {
		owners, st, err = l.Lookup([]uint64{1004}, LookupOptions{MaxPIDs: 1, After: after})
		if err != nil {
			t.Fatal(err)
		}
		if len(owners[1004]) > 0 {
			found = i
			break
		}
		after = st.LastPID
		lasts = append(lasts, after)
	}
	if found != 4 || !slices.Equal(lasts, []int{100, 200, 300, 400}) {
		t.Errorf("resumed one-process lookups: found at %d after %v, want 4 after [100 200 300 400]", found, lasts)
	}
	// A lookup whose limit runs out among the hints keeps the resume point.
	_, st, err = l.Lookup([]uint64{9999}, LookupOptions{MaxPIDs: 1, After: 200, Hint: []int{100}})
	if err != nil || st.PIDsScanned != 1 || st.LastPID != 200 || !st.Incomplete {
		t.Errorf("limit reached in the hints: stats %+v, err %v; want 1 pid, LastPID 200, incomplete", st, err)
	}

	// Limits.
	_, st, err = l.Lookup([]uint64{9999}, LookupOptions{MaxPIDs: 2})
	if err != nil || st.PIDsScanned != 2 || !st.Incomplete {
		t.Errorf("MaxPIDs 2: err %v, stats %+v", err, st)
	}
	_, st, err = l.Lookup([]uint64{9999}, LookupOptions{Timeout: time.Nanosecond})
	if err != nil || st.PIDsScanned != 0 || !st.Incomplete {
		t.Errorf("timeout: err %v, stats %+v", err, st)
	}
	// Nothing to look for: no scan.
	owners, st, err = l.Lookup(nil, LookupOptions{})
	if err != nil || len(owners) != 0 || st.PIDsScanned != 0 {
		t.Errorf("empty lookup: %v %+v %v", owners, st, err)
	}
	// A missing root is the one fatal error.
	if _, _, err := NewInodeLookup(filepath.Join(root, "nope")).Lookup([]uint64{1}, LookupOptions{}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing root: %v", err)
	}
}

func TestLookupFakeProcDenied(t *testing.T) {
	root := makeFakeProc(t, map[int]fakePID{
		100: {comm: "secret", fds: map[string]string{"3": "socket:[1001]"}, fdDir: 0o700},
		200: {comm: "open", fds: map[string]string{"3": "socket:[1002]"}},
	})
	openUp(t, root)
	if err := os.Chmod(filepath.Join(root, "100", "fd"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := asUser(t, 65534, func() error {
		owners, st, err := NewInodeLookup(root).Lookup([]uint64{1001, 1002}, LookupOptions{})
		if err != nil {
			return err
		}
		if st.Denied != 1 || st.PIDsScanned != 2 || len(owners[1001]) != 0 || !slices.Equal(owners[1002], []Process{{200, "open"}}) {
			return fmt.Errorf("owners %v, stats %+v", owners, st)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// inodeOf returns the inode of a socket: the st_ino of fstat on its fd.
func inodeOf(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ino uint64
	var serr error
	if err := raw.Control(func(fd uintptr) {
		var st unix.Stat_t
		serr = unix.Fstat(int(fd), &st)
		ino = st.Ino
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return ino
}

func selfComm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

func TestLookupOwnSockets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()

	inodes := []uint64{
		inodeOf(t, ln.(*net.TCPListener)),
		inodeOf(t, cl.(*net.TCPConn)),
		inodeOf(t, udp.(*net.UDPConn)),
	}
	owners, st, err := NewInodeLookup("").Lookup(inodes, LookupOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	me := Process{PID: os.Getpid(), Comm: selfComm(t)}
	for _, ino := range inodes {
		if !slices.Equal(owners[ino], []Process{me}) {
			t.Errorf("inode %d: owners %v, want [%v]", ino, owners[ino], me)
		}
	}
	if st.Incomplete {
		t.Errorf("incomplete: %+v", st)
	}
	t.Logf("found %d inodes in %v: %+v", len(owners), st.Elapsed, st)

	// With the owner as a hint, one process is read instead of the node.
	owners, st, err = NewInodeLookup("").Lookup(inodes, LookupOptions{Hint: []int{os.Getpid()}})
	if err != nil {
		t.Fatal(err)
	}
	if st.PIDsScanned != 1 || len(owners) != len(inodes) {
		t.Errorf("hinted lookup: owners %v, stats %+v", owners, st)
	}
}

// startHolder starts `sleep` holding f as descriptor 3.
func startHolder(t *testing.T, f *os.File) *exec.Cmd {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("sleep(1) not installed")
	}
	cmd := exec.Command(sleep, "60")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func TestLookupChildProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ino := inodeOf(t, ln.(*net.TCPListener))
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := startHolder(t, f)
	// Only the child holds the socket now.
	f.Close()
	ln.Close()

	owners, st, err := NewInodeLookup("").Lookup([]uint64{ino}, LookupOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want := []Process{{PID: cmd.Process.Pid, Comm: "sleep"}}
	if !slices.Equal(owners[ino], want) {
		t.Errorf("owners %v, want %v (stats %+v)", owners[ino], want, st)
	}

	// A socket the test and the child share: AllOwners lists both.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	ino2 := inodeOf(t, ln2.(*net.TCPListener))
	f2, err := ln2.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	cmd2 := startHolder(t, f2)
	owners, _, err = NewInodeLookup("").Lookup([]uint64{ino2}, LookupOptions{AllOwners: true, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want = sortedOwners([]Process{{os.Getpid(), selfComm(t)}, {cmd2.Process.Pid, "sleep"}})
	if got := sortedOwners(owners[ino2]); !slices.Equal(got, want) {
		t.Errorf("shared socket owners %v, want %v", got, want)
	}
}

// TestLookupDeniedRealProc scans the real /proc with an unprivileged
// file-system uid: root's processes deny access and are counted, and the
// lookup still completes.
func TestLookupDeniedRealProc(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ino := inodeOf(t, ln.(*net.TCPListener))
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := startHolder(t, f)
	f.Close()
	ln.Close()
	err = asUser(t, 65534, func() error {
		owners, st, err := NewInodeLookup("").Lookup([]uint64{ino}, LookupOptions{Timeout: time.Minute})
		if err != nil {
			return err
		}
		// The child runs as root: its descriptors are out of reach. The
		// test's own process stays readable (same thread group).
		if len(owners) != 0 || st.Denied == 0 || st.PIDsScanned < st.Denied || st.Incomplete {
			return fmt.Errorf("owners %v, stats %+v: want nothing found and denials counted", owners, st)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The same lookup with full privileges finds the child.
	owners, _, err := NewInodeLookup("").Lookup([]uint64{ino}, LookupOptions{Timeout: time.Minute})
	if err != nil || !slices.Equal(owners[ino], []Process{{cmd.Process.Pid, "sleep"}}) {
		t.Errorf("as root: owners %v, err %v", owners, err)
	}
}

// BenchmarkLookupFullScan measures a scan of the whole real /proc for an
// inode that does not exist, with 4000 extra sockets open in this process,
// and reports the cost per descriptor.
func BenchmarkLookupFullScan(b *testing.B) {
	for i := 0; i < 2000; i++ {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fds[0])
		defer unix.Close(fds[1])
	}
	l := NewInodeLookup("")
	var st LookupStats
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if _, st, err = l.Lookup([]uint64{1 << 40}, LookupOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(st.FDsScanned), "fds/op")
	b.ReportMetric(float64(st.PIDsScanned), "pids/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(st.FDsScanned), "ns/fd")
}
