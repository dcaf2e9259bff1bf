//go:build linux

package netns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
	"github.com/tcpstate/tcpstate-exporter/internal/fixture/rawsock"
)

// The helper process: the test binary run again with helperEnv set. It
// builds the sockets described by specEnv, prints "ready" and holds them
// until its stdin closes (or helperLife passes), so that the sockets and
// their descriptors live outside the test process and a namespace can hold
// a process.
const (
	helperEnv  = "TSNS_HELPER"
	specEnv    = "TSNS_SPEC"
	helperLife = 10 * time.Minute
	// maxPerListener bounds connections per listener, well under the
	// ephemeral port range and the accept backlog cap.
	maxPerListener = 16000
	batch          = 256
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := helperMain(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// sockSpec asks for sockets in one namespace: Path "-" is the helper's own
// namespace; Listen extra listeners and Pairs connected pairs (both ends
// ESTABLISHED, plus one listener per maxPerListener pairs), over IPv6 when
// V6 is set.
type sockSpec struct {
	Path   string
	Listen int
	Pairs  int
	V6     bool
}

func (s sockSpec) String() string {
	fam := "4"
	if s.V6 {
		fam = "6"
	}
	return fmt.Sprintf("%s:%d:%d:%s", s.Path, s.Listen, s.Pairs, fam)
}

func parseSpecs(v string) ([]sockSpec, error) {
	var out []sockSpec
	for _, f := range strings.Split(v, ",") {
		p := strings.Split(f, ":")
		if len(p) != 4 {
			return nil, fmt.Errorf("bad spec %q", f)
		}
		l, err1 := strconv.Atoi(p[1])
		n, err2 := strconv.Atoi(p[2])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("bad spec %q: %w", f, err)
		}
		out = append(out, sockSpec{Path: p[0], Listen: l, Pairs: n, V6: p[3] == "6"})
	}
	return out, nil
}

// listeners returns the LISTEN sockets a spec makes.
func (s sockSpec) listeners() int {
	return s.Listen + (s.Pairs+maxPerListener-1)/maxPerListener
}

func helperMain() error {
	specs, err := parseSpecs(os.Getenv(specEnv))
	if err != nil {
		return err
	}
	for _, s := range specs {
		if err := inNetns(s.Path, func() error { return build(s) }); err != nil {
			return fmt.Errorf("%v: %w", s, err)
		}
	}
	fmt.Println("ready")
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(helperLife):
	}
	return nil
}

// inNetns runs fn on a locked thread inside the namespace at path ("-":
// here). The thread is left locked (and dies) if it cannot switch back.
func inNetns(path string, fn func() error) error {
	if path == "-" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- err
			return
		}
		err = fn()
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
			errc <- errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// build opens the spec's sockets; the descriptors stay open until exit.
func build(s sockSpec) error {
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if s.V6 {
		lo = netip.IPv6Loopback()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for range s.Listen {
		if _, _, err := rawsock.Listen(netip.AddrPortFrom(lo, 0), 16); err != nil {
			return err
		}
	}
	for left := s.Pairs; left > 0; {
		n := min(left, maxPerListener)
		left -= n
		lfd, addr, err := rawsock.Listen(netip.AddrPortFrom(lo, 0), 4096)
		if err != nil {
			return err
		}
		for done := 0; done < n; {
			k := min(batch, n-done)
			fds := make([]int, 0, k)
			for range k {
				fd, _, err := rawsock.Dial(addr, true)
				if err != nil {
					return err
				}
				fds = append(fds, fd)
			}
			if err := rawsock.WaitConnected(fds, deadline); err != nil {
				return err
			}
			srv, err := rawsock.Accept(lfd, k, deadline)
			if err != nil {
				return err
			}
			for _, fd := range srv {
				if err := rawsock.SetLinger0(fd); err != nil {
					return err
				}
			}
			done += k
		}
	}
	return nil
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHelper starts a helper, inside namespace name when name is not
// empty (so that it is a process of that namespace), and waits until its
// sockets exist. Cleanup stops it.
func startHelper(t testing.TB, name string, specs ...sockSpec) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if name != "" {
		cmd = exec.Command("ip", "netns", "exec", name, exe)
	} else {
		cmd = exec.Command(exe)
	}
	parts := make([]string, len(specs))
	for i, s := range specs {
		parts[i] = s.String()
	}
	cmd.Env = append(os.Environ(), helperEnv+"=1", specEnv+"="+strings.Join(parts, ","))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting helper: %v", err)
	}
	h := &helper{cmd: cmd, stdin: stdin}
	t.Cleanup(h.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		h.stop()
		t.Fatalf("helper did not get ready: %q %v", line, err)
	}
	return h
}

// pid returns the helper's process ID.
func (h *helper) pid() int { return h.cmd.Process.Pid }

// stop ends the helper; its sockets close with it. Stopping twice is a
// no-op.
func (h *helper) stop() {
	if h.cmd.ProcessState != nil {
		return
	}
	h.stdin.Close()
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

// newNamedNetns creates tsns-<random> with the project's fixture (lo up,
// deleted in cleanup; a test that cannot create namespaces skips saying
// why).
func newNamedNetns(t testing.TB) *fixture.Netns {
	t.Helper()
	return fixture.NewNetnsPrefix(t, "tsns-")
}

// inodeOf returns the namespace inode of a path.
func inodeOf(t testing.TB, path string) uint64 {
	t.Helper()
	k, err := statKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k.Inode
}

// openFDs returns the descriptors of this process and what they point to.
func openFDs(t testing.TB) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the descriptor ReadDir itself used
		}
		out[e.Name()] = l
	}
	return out
}

// checkNoLeak fails if descriptors opened since before are still open.
func checkNoLeak(t testing.TB, before map[string]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := openFDs(t)
		var extra []string
		for fd, l := range after {
			if before[fd] != l {
				extra = append(extra, fd+" -> "+l)
			}
		}
		if len(extra) == 0 && len(after) <= len(before) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("descriptors leaked: %d before, %d after; new: %v", len(before), len(after), extra)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
