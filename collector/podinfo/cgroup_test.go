package podinfo

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	uid  = "8dbc5577-d0e2-4706-8787-57d52c03ddf2"
	uidU = "8dbc5577_d0e2_4706_8787_57d52c03ddf2" // as the systemd driver writes it
	cid  = "4c5b3f1e9a2d7c6b8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d"
	// hash is a static pod's UID: the hash of its manifest.
	hash = "6c2a1e0f9b3d4e5f8a7b6c5d4e3f2a1b"
)

// cgroupFiles are /proc/PID/cgroup contents as the kubelet's cgroup drivers
// lay them out, on cgroup v1, v2 and hybrid hosts.
var cgroupFiles = []struct {
	name, content, want string
}{
	{"v1 cgroupfs besteffort (containerd, docker)", `12:memory:/kubepods/besteffort/pod` + uid + `/` + cid + `
11:cpu,cpuacct:/kubepods/besteffort/pod` + uid + `/` + cid + `
3:pids:/kubepods/besteffort/pod` + uid + `/` + cid + `
1:name=systemd:/kubepods/besteffort/pod` + uid + `/` + cid + `
`, uid},
	{"v1 cgroupfs guaranteed", "4:memory:/kubepods/pod" + uid + "/" + cid + "\n", uid},
	{"v1 cgroupfs pause process in the pod cgroup", "4:memory:/kubepods/burstable/pod" + uid + "\n", uid},
	{"v1 systemd burstable containerd", `11:cpuset:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod` + uidU + `.slice/cri-containerd-` + cid + `.scope
1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod` + uidU + `.slice/cri-containerd-` + cid + `.scope
`, uid},
	{"v1 systemd guaranteed docker", "5:memory:/kubepods.slice/kubepods-pod" + uidU + ".slice/docker-" + cid + ".scope\n", uid},
	{"v2 systemd besteffort cri-o", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + cid + ".scope\n", uid},
	{"v2 systemd conmon of cri-o", "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-conmon-" + cid + ".scope\n", uid},
	{"v2 cgroupfs", "0::/kubepods/burstable/pod" + uid + "/" + cid + "\n", uid},
	{"v2 seen from a cgroup namespace", "0::/../../kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n", uid},
	{"v2 kind node (kubelet cgroup root)", "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope\n", uid},
	{"v2 static pod", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + hash + ".slice/cri-containerd-" + cid + ".scope\n", hash},
	{"v1 cgroupfs static pod", "3:pids:/kubepods/burstable/pod" + hash + "/" + cid + "\n", hash},
	{"hybrid: v2 line at the root, v1 lines in the pod", `2:memory:/kubepods/besteffort/pod` + uid + `/` + cid + `
1:name=systemd:/kubepods/besteffort/pod` + uid + `/` + cid + `
0::/
`, uid},
	{"host daemon", "0::/system.slice/containerd.service\n", ""},
	{"user session", "0::/user.slice/user-0.slice/session-3.scope\n", ""},
	{"root", "0::/\n", ""},
	{"not a pod segment", "0::/system.slice/mypod1234.service\n", ""},
	{"kubepods slice, no pod", "0::/kubepods.slice/kubepods-burstable.slice\n", ""},
	{"uppercase is not a kubelet UID", "0::/kubepods/pod" + strings.ToUpper(uid) + "\n", ""},
	{"empty file", "", ""},
}

func TestParseCgroup(t *testing.T) {
	for _, tc := range cgroupFiles {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCgroup(strings.NewReader(tc.content))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseCgroupPrefersUnified(t *testing.T) {
	other := "11111111-2222-3333-4444-555555555555"
	got, err := ParseCgroup(strings.NewReader("1:name=systemd:/kubepods/pod" + other + "/x\n0::/kubepods/pod" + uid + "/y\n"))
	if err != nil || got != uid {
		t.Errorf("got %q %v, want the v2 line's %q", got, err, uid)
	}
}

func TestParseCgroupMalformed(t *testing.T) {
	for _, s := range []string{"garbage\n", "x::/kubepods/pod" + uid + "\n", "0:/only-two\n"} {
		if _, err := ParseCgroup(strings.NewReader(s)); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

// TestPodUIDFakeTree reads cgroup files from a fake /proc.
func TestPodUIDFakeTree(t *testing.T) {
	root := t.TempDir()
	write := func(pid, content string) {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "cgroup"), []byte(content), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	for i, tc := range cgroupFiles {
		pid := 100 + i
		write(itoa(pid), tc.content)
		got, err := PodUID(root, pid)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q %v, want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := PodUID(root, 99999); !errors.Is(err, ErrNoProcess) {
		t.Errorf("missing process: %v, want ErrNoProcess", err)
	}
	write("7", "bad line\n")
	if _, err := PodUID(root, 7); err == nil || errors.Is(err, ErrNoProcess) {
		t.Errorf("malformed file: %v", err)
	}
	r := NewWithClient(nil, ResolverOptions{ProcRoot: root, Logger: slog.New(slog.DiscardHandler)})
	if got := r.PodUID(100); got != uid {
		t.Errorf("Resolver.PodUID: %q", got)
	}
	if got := r.PodUID(99999); got != "" {
		t.Errorf("Resolver.PodUID of a missing process: %q", got)
	}
}

// TestPodUIDOwnProcess reads this process's real cgroup file: it must
// parse, whatever the machine.
func TestPodUIDOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/cgroup"); err != nil {
		t.Skip("no /proc/self/cgroup on this system")
	}
	got, err := PodUID("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("own pod UID: %q", got)
}

func FuzzParseCgroup(f *testing.F) {
	for _, tc := range cgroupFiles {
		f.Add(tc.content)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseCgroup(strings.NewReader(s))
		if err != nil {
			return
		}
		if got != "" && (len(got) != 36 && len(got) != 32 || strings.Contains(got, "_")) {
			t.Errorf("UID %q from %q", got, s)
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
