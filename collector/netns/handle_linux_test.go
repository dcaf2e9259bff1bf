//go:build linux

package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/diag"
)

// warmUp opens and closes what the runtime keeps open once used (the
// poller behind netlink sockets), so that descriptor counts compare.
func warmUp(t testing.TB) {
	t.Helper()
	c, err := diag.Dial(nil)
	if err != nil {
		t.Fatalf("sock_diag in own namespace: %v", err)
	}
	c.Close()
}

// nsOfThread returns the namespace inode of the calling thread.
func nsOfThread() (uint64, error) {
	k, err := statKey("/proc/thread-self/ns/net")
	return k.Inode, err
}

// threadsOutside lists threads of this process that are not in namespace
// ino.
func threadsOutside(t *testing.T, ino uint64) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		k, err := statKey(filepath.Join("/proc/self/task", e.Name(), "ns", "net"))
		if err == nil && k.Inode != ino {
			out = append(out, e.Name())
		}
	}
	return out
}

// tcpInUse reads "TCP: inuse N" from a sockstat file.
func tcpInUse(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "TCP:" && f[1] == "inuse" {
			return strconv.Atoi(f[2])
		}
	}
	return 0, fmt.Errorf("%s: no TCP inuse line", path)
}

// countSockets dumps every TCP socket of c's namespace by state.
func countSockets(t *testing.T, c *diag.Conn) map[diag.State]int {
	t.Helper()
	n := map[diag.State]int{}
	if _, err := c.Dump(diag.Request{States: diag.AllStates}, func(s *diag.Socket) error {
		n[s.State]++
		return nil
	}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	return n
}

func TestHandleDoAndDial(t *testing.T) {
	warmUp(t)
	name := newNamedNetns(t).Name()
	path := "/run/netns/" + name
	ino := inodeOf(t, path)
	host, err := statKey("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	startHelper(t, "", sockSpec{Path: path, Listen: 3, Pairs: 4})
	before := openFDs(t)

	ns := Namespace{Key: Key{Dev: host.Dev, Inode: ino}, Path: path}
	h, err := Open(ns, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	// Do runs inside, concurrently, and leaves every thread where it was.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			errs <- h.Do(func() error {
				got, err := nsOfThread()
				if err == nil && got != ino {
					err = errors.New("Do ran in namespace " + strconv.FormatUint(got, 10))
				}
				return err
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if out := threadsOutside(t, host.Inode); len(out) > 0 {
		t.Errorf("threads left in another namespace: %v", out)
	}
	// An error from fn comes back unchanged; a panic is raised again.
	sentinel := errors.New("from fn")
	if err := h.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	func() {
		defer func() {
			if recover() != "boom" {
				t.Error("panic in fn not raised in the caller")
			}
		}()
		h.Do(func() error { panic("boom") })
	}()

	// Inside Do, /proc/thread-self/net follows the thread into the
	// namespace; /proc/net (= /proc/self/net) stays with the main thread.
	if err := h.Do(func() error {
		in, err := tcpInUse("/proc/thread-self/net/sockstat")
		if err != nil {
			return err
		}
		if in != 12 {
			t.Errorf("/proc/thread-self/net/sockstat inside: TCP inuse %d, want the helper's 12", in)
		}
		self, err := tcpInUse("/proc/net/sockstat")
		if err != nil {
			return err
		}
		hostIn, err := tcpInUse("/proc/self/net/sockstat")
		if err == nil && self != hostIn {
			t.Errorf("/proc/net and /proc/self/net differ: %d, %d", self, hostIn)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Dial reads the namespace: the helper's sockets and nothing else.
	c, err := h.Dial()
	if err != nil {
		t.Fatal(err)
	}
	got := countSockets(t, c)
	c.Close()
	if got[diag.Listen] != 4 || got[diag.Established] != 8 || len(got) != 2 {
		t.Errorf("sockets by state %v, want 4 LISTEN and 8 ESTABLISHED", got)
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := h.Do(func() error { return nil }); !errors.Is(err, ErrGone) {
		t.Errorf("Do after Close: %v, want ErrGone", err)
	}
	if _, err := h.Dial(); !errors.Is(err, ErrGone) {
		t.Errorf("Dial after Close: %v, want ErrGone", err)
	}
	checkNoLeak(t, before)
}

func TestHandleOpenThroughPID(t *testing.T) {
	ns := newNamedNetns(t)
	name := ns.Name()
	ino := inodeOf(t, "/run/netns/"+name)
	hp := startHelper(t, name, sockSpec{Path: "-", Listen: 1})
	own, err := statKey("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	key := Key{Dev: own.Dev, Inode: ino}

	// Only a process: open through /proc/PID/ns/net.
	h, err := Open(Namespace{Key: key, PID: hp.pid(), PIDs: []int{hp.pid()}}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.Dial()
	if err != nil {
		t.Fatal(err)
	}
	if got := countSockets(t, c); got[diag.Listen] != 1 || len(got) != 1 {
		t.Errorf("sockets %v, want the helper's one listener", got)
	}
	c.Close()
	h.Close()

	// A PID now in another namespace (here: ours) is not taken for it.
	_, err = Open(Namespace{Key: key, PID: os.Getpid(), PIDs: []int{os.Getpid()}}, "/proc")
	if !errors.Is(err, ErrGone) {
		t.Errorf("Open through a PID of another namespace: %v, want ErrGone", err)
	}
	// Every way in gone.
	hp.stop()
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Namespace{Key: key, PID: hp.pid(), PIDs: []int{hp.pid()}, Path: "/run/netns/" + name}, "/proc")
	if !errors.Is(err, ErrGone) {
		t.Errorf("Open of a deleted namespace: %v, want ErrGone", err)
	}
	checkNoLeak(t, before)
}

// TestHandleSetnsGone checks that setns errors meaning "no namespace
// there" come back as ErrGone and leave the thread where it was.
func TestHandleSetnsGone(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := &Handle{ns: Namespace{Key: Key{Inode: 1}}, h: vnetns.NsHandle(f.Fd())}
	ran := false
	err = h.Do(func() error { ran = true; return nil })
	if !errors.Is(err, ErrGone) || !errors.Is(err, unix.EINVAL) || ran {
		t.Errorf("Do into /dev/null: %v (ran %v), want ErrGone wrapping EINVAL", err, ran)
	}
	if _, err := h.Dial(); !errors.Is(err, ErrGone) {
		t.Errorf("Dial into /dev/null: %v, want ErrGone", err)
	}
}

// TestHandleHost needs no privilege: the agent's own namespace has no
// descriptor and Do runs fn in place.
func TestHandleHost(t *testing.T) {
	warmUp(t)
	before := openFDs(t)
	h, err := Open(Namespace{IsHost: true}, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	own, err := statKey("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Do(func() error {
		got, err := nsOfThread()
		if err == nil && got != own.Inode {
			t.Errorf("host Do ran in %d, want %d", got, own.Inode)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	c, err := h.Dial()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	h.Close()
	if !h.present("/proc") {
		t.Error("host not present")
	}
	checkNoLeak(t, before)
}

// TestOpenRefusesFIFO checks that a FIFO planted where a process's
// namespace file should be (in a --path.procfs tree, or swapped in after
// Discover) is refused at once rather than waited on.
func TestOpenRefusesFIFO(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	dir := filepath.Join(ft.proc(), "30", "ns")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "net")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := statKey(fifo)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		h, err := Open(Namespace{Key: k, PID: 30, PIDs: []int{30}}, ft.proc())
		if err == nil {
			h.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errNotNamespace) {
			t.Errorf("Open of a FIFO: %v, want errNotNamespace", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open blocked on a FIFO for 5 s")
	}
}
