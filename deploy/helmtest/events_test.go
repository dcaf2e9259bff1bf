package helmtest

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// TestEventsCapabilities checks that events.enabled adds exactly BPF and
// PERFMON to what each mode already has, and runs the pod as uid 0 (the
// only way added capabilities reach the effective set), and that without it
// neither capability appears.
func TestEventsCapabilities(t *testing.T) {
	helmBinary(t)
	for _, c := range []struct {
		name     string
		args     []string
		wantAdd  []corev1.Capability
		wantRoot bool
	}{
		{"host, events off", nil, nil, false},
		{"host, events on", []string{"--set", "events.enabled=true"}, []corev1.Capability{"BPF", "PERFMON"}, true},
		{"pod mode, events off", []string{"--set", "netnsMode=all"}, []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE"}, true},
		{"pod mode, events on", []string{"--set", "netnsMode=all", "--set", "events.enabled=true"},
			[]corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "BPF", "PERFMON"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ds := exactlyOne(t, render(t, nil, c.args...).DaemonSets, "DaemonSet")
			pod := ds.Spec.Template.Spec
			sc := pod.Containers[0].SecurityContext
			if sc == nil || sc.Capabilities == nil {
				t.Fatal("no container capabilities")
			}
			if d := cmp.Diff(c.wantAdd, sc.Capabilities.Add); d != "" {
				t.Errorf("capabilities added (-want +got):\n%s", d)
			}
			if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("capabilities dropped %v, want ALL", sc.Capabilities.Drop)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged {
				t.Error("privilege escalation or privileged allowed")
			}
			root := pod.SecurityContext != nil && pod.SecurityContext.RunAsUser != nil && *pod.SecurityContext.RunAsUser == 0
			if root != c.wantRoot {
				t.Errorf("runs as uid 0: %v, want %v", root, c.wantRoot)
			}
			for _, a := range pod.Containers[0].Args {
				if strings.HasPrefix(a, "--collector.events") {
					t.Errorf("chart passes %q; the exporter's default (auto) follows the capabilities", a)
				}
			}
		})
	}
}
