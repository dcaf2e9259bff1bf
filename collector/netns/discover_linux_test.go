//go:build linux

package netns

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fakeTree builds a procfs-like tree in which namespace files are plain
// files: hard links to one file share a device and inode, like two
// processes in one namespace.
type fakeTree struct {
	t    *testing.T
	root string
	ns   map[string]string // namespace name -> its file
}

func newFakeTree(t *testing.T) *fakeTree {
	ft := &fakeTree{t: t, root: t.TempDir(), ns: map[string]string{}}
	for _, d := range []string{"proc", "nsfiles"} {
		if err := os.Mkdir(filepath.Join(ft.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return ft
}

func (ft *fakeTree) proc() string { return filepath.Join(ft.root, "proc") }

// nsFile returns the file of a namespace, creating it.
func (ft *fakeTree) nsFile(name string) string {
	if p, ok := ft.ns[name]; ok {
		return p
	}
	p := filepath.Join(ft.root, "nsfiles", name)
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		ft.t.Fatal(err)
	}
	ft.ns[name] = p
	return p
}

// key returns the Key of a namespace.
func (ft *fakeTree) key(name string) Key {
	k, err := statKey(ft.nsFile(name))
	if err != nil {
		ft.t.Fatal(err)
	}
	return k
}

// process adds /proc/<pid>/ns/net in namespace ns ("" for a process
// without namespace links, like a zombie).
func (ft *fakeTree) process(pid, ns string) {
	dir := filepath.Join(ft.proc(), pid, "ns")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ft.t.Fatal(err)
	}
	if ns == "" {
		return
	}
	if err := os.Link(ft.nsFile(ns), filepath.Join(dir, "net")); err != nil {
		ft.t.Fatal(err)
	}
}

// mount adds a bind mount of namespace ns at dir/name.
func (ft *fakeTree) mount(dir, name, ns string) string {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ft.t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.Link(ft.nsFile(ns), p); err != nil {
		ft.t.Fatal(err)
	}
	return p
}

func TestDiscoverFakeTree(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	ft.process("1", "host")
	ft.process("40", "host")
	ft.process("12", "a")
	ft.process("7", "a")
	ft.process("3", "b")
	ft.process("5", "") // exited or zombie: no namespace link
	if err := os.Mkdir(filepath.Join(ft.proc(), "sys"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(ft.root, "run", "netns")
	bPath := ft.mount(run, "cni-b", "b")
	cPath := ft.mount(run, "only-mounted", "c")
	// /var/run/netns as a link to /run/netns: the same files again.
	if err := os.Symlink(run, filepath.Join(ft.root, "varrun")); err != nil {
		t.Fatal(err)
	}
	got, st, err := Discover(ft.proc(), []string{run, filepath.Join(ft.root, "varrun"), filepath.Join(ft.root, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	want := []Namespace{
		{Key: ft.key("host"), PID: 1, PIDs: []int{1, 40}, IsHost: true},
	}
	rest := []Namespace{
		{Key: ft.key("a"), PID: 7, PIDs: []int{7, 12}},
		{Key: ft.key("b"), PID: 3, PIDs: []int{3}, Path: bPath},
		{Key: ft.key("c"), Path: cPath},
	}
	slices.SortFunc(rest, func(x, y Namespace) int { return int(x.Inode) - int(y.Inode) })
	want = append(want, rest...)
	if len(got) != len(want) {
		t.Fatalf("got %d namespaces %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		if !namespaceEqual(got[i], want[i]) {
			t.Errorf("namespace %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	wantSt := DiscoverStats{Processes: 6, Vanished: 1, Mounts: 4}
	if st != wantSt {
		t.Errorf("stats %+v, want %+v", st, wantSt)
	}
	if got[0].Label() != "host" || got[1].Label() == "host" {
		t.Errorf("labels: %q %q", got[0].Label(), got[1].Label())
	}
}

func namespaceEqual(a, b Namespace) bool {
	return a.Key == b.Key && a.PID == b.PID && slices.Equal(a.PIDs, b.PIDs) && a.Path == b.Path && a.IsHost == b.IsHost
}

func TestDiscoverKeepsLowestPIDs(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	for _, pid := range []string{"900", "3", "77", "1000", "12", "5", "40"} {
		ft.process(pid, "a")
	}
	got, _, err := Discover(ft.proc(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %+v, want host and one namespace", got)
	}
	if want := []int{3, 5, 12, 40}; !slices.Equal(got[1].PIDs, want) || got[1].PID != 3 {
		t.Errorf("PIDs %v (PID %d), want %v", got[1].PIDs, got[1].PID, want)
	}
	// The host is listed even with no process found in it.
	if !got[0].IsHost || got[0].PID != 0 {
		t.Errorf("host %+v", got[0])
	}
}

func TestDiscoverErrors(t *testing.T) {
	ft := newFakeTree(t)
	if _, _, err := Discover(ft.proc(), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("without self: err %v, want not-exist", err)
	}
	if _, _, err := Discover(filepath.Join(ft.root, "nope"), nil); err == nil {
		t.Error("missing proc root: no error")
	}
	ft.process("self", "host")
	notDir := ft.nsFile("x")
	if _, _, err := Discover(ft.proc(), []string{notDir}); err == nil {
		t.Error("run dir that is a file: no error")
	}
}

// TestDiscoverRealProc needs no privilege: the agent's own namespace is
// always readable.
func TestDiscoverRealProc(t *testing.T) {
	got, st, err := Discover("/proc", nil)
	if err != nil {
		t.Fatal(err)
	}
	own, err := statKey("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || !got[0].IsHost || got[0].Key != own {
		t.Fatalf("first namespace %+v, want the host %+v", got, own)
	}
	if st.Processes == 0 {
		t.Errorf("no processes scanned: %+v", st)
	}
	t.Logf("%d namespaces, %+v", len(got), st)
}

func TestAddPID(t *testing.T) {
	var p []int
	for _, pid := range []int{50, 10, 30, 20, 60, 5, 40} {
		p = addPID(p, pid)
	}
	if want := []int{5, 10, 20, 30}; !slices.Equal(p, want) {
		t.Errorf("got %v, want %v", p, want)
	}
}

// TestDiscoverSkipsPlainFiles puts a plain file, as left by a failed bind
// mount, in a run directory on another device than the namespace files.
func TestDiscoverSkipsPlainFiles(t *testing.T) {
	ft := newFakeTree(t)
	ft.process("self", "host")
	other, err := os.MkdirTemp("/dev/shm", "tsns-test-")
	if err != nil {
		t.Skipf("no second file system to put a plain file on: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	if err := os.WriteFile(filepath.Join(other, "stale"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if k, err := statKey(other); err != nil || k.Dev == ft.key("host").Dev {
		t.Skipf("/dev/shm is on the same device as %s (%v)", ft.root, err)
	}
	got, st, err := Discover(ft.proc(), []string{other})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || st.NotNamespace != 1 || st.Mounts != 0 {
		t.Errorf("got %+v, stats %+v; want only the host and one plain file skipped", got, st)
	}
}
