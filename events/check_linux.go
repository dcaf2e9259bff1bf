//go:build linux

package events

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Capability numbers, include/uapi/linux/capability.h.
const (
	capPerfmon = 38
	capBPF     = 39
)

// ErrNotPermitted says the process lacks the capabilities to load the
// programs; ErrNoBTF that the kernel exposes no BTF
// (/sys/kernel/btf/vmlinux), which tp_btf programs need.
var (
	ErrNotPermitted = errors.New("events: CAP_BPF and CAP_PERFMON are not both in the effective set")
	ErrNoBTF        = errors.New("events: the kernel has no BTF (/sys/kernel/btf/vmlinux)")
)

// Check reports whether the process may load the event programs: nil, or
// an error wrapping ErrNotPermitted or ErrNoBTF that says what is missing.
// It asks for CAP_BPF and CAP_PERFMON (Linux 5.8 and later) even where
// CAP_SYS_ADMIN alone would do, so that events are on only where they were
// granted for this purpose (the Helm chart's events.enabled). Loading can
// still fail for other reasons (a kernel without the tracepoints, a seccomp
// profile refusing bpf(2)); Open says so.
func Check() error {
	eff, err := effectiveCaps("/proc/self/status")
	if err != nil {
		return fmt.Errorf("events: reading capabilities: %w", err)
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	if !has(capBPF) || !has(capPerfmon) {
		var missing []string
		if !has(capBPF) {
			missing = append(missing, "CAP_BPF")
		}
		if !has(capPerfmon) {
			missing = append(missing, "CAP_PERFMON")
		}
		return fmt.Errorf("%w (missing %s)", ErrNotPermitted, strings.Join(missing, ", "))
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("%w: %w", ErrNoBTF, err)
	}
	return nil
}

// effectiveCaps reads the CapEff line of a /proc/PID/status file.
func effectiveCaps(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no CapEff line in %s", path)
}
