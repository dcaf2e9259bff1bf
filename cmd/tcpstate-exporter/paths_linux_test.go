//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tcpstate/tcpstate-exporter/internal/fixture"
)

// Every path-like flag is honoured or refused. --path.procfs: the values a
// scrape reports come from the tree it names, and an empty tree gives
// counted read errors (the sampler once read /proc whatever the flag
// said). --kubeconfig: read even without a node name, and refused where
// nothing would use it. --web.config.file: TestAccessTLSBasicAuth and
// TestAccessBadWebConfig show it is used by serve; it is refused by
// snapshot.

// writeTree writes files (path relative to root -> content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// gaugeOrCounter returns the value of the series of mfs[name] whose labels
// include want, and whether there is one.
func gaugeOrCounter(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	for _, m := range mfs[name].GetMetric() {
		l := labelsOf(m)
		match := true
		for k, v := range want {
			if l[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

func TestPathProcfsIsUsed(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proc := t.TempDir()
	writeTree(t, proc, map[string]string{
		"thread-self/net/netstat":              "TcpExt: ListenOverflows ListenDrops\nTcpExt: 123456 7\n",
		"thread-self/net/snmp":                 "Tcp: OutRsts EstabResets\nTcp: 654321 9\n",
		"thread-self/net/sockstat":             "TCP: inuse 1 orphan 4321 tw 0 alloc 1 mem 1\n",
		"sys/net/core/somaxconn":               "31337\n",
		"sys/net/ipv4/ip_local_port_range":     "40000\t40999\n",
		"sys/net/ipv4/ip_local_reserved_ports": "\n",
	})
	ns := fixture.NewNetnsPrefix(t, "tshp-")
	client, _ := exporterInNetns(t, ctx, ns, bin, "--path.procfs="+proc)
	_, mfs := scrape(t, client)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tcpstate_netstat_listen_overflows_total", nil, 123456},
		{"tcpstate_netstat_out_rsts_total", nil, 654321},
		{"tcpstate_orphan_sockets", nil, 4321},
		{"tcpstate_sysctl", map[string]string{"name": "net.core.somaxconn"}, 31337},
		{"tcpstate_local_ports_usable", nil, 1000},
	} {
		if v, ok := gaugeOrCounter(mfs, c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v (present %v), want %v from --path.procfs", c.name, c.labels, v, ok, c.want)
		}
	}
	// Files the tree lacks are read errors, not values from /proc.
	if v, ok := gaugeOrCounter(mfs, "tcpstate_kernel_read_errors_total", map[string]string{"file": "net.ipv4.tcp_syncookies"}); !ok || v < 1 {
		t.Errorf("tcp_syncookies missing from the tree: read errors %v (present %v), want at least 1", v, ok)
	}
	if _, ok := gaugeOrCounter(mfs, "tcpstate_sysctl", map[string]string{"name": "net.ipv4.tcp_syncookies"}); ok {
		t.Error("tcpstate_sysctl{name=net.ipv4.tcp_syncookies} served though the tree lacks it: read from /proc")
	}
}

func TestPathProcfsEmptyDir(t *testing.T) {
	bin := exporterBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := fixture.NewNetnsPrefix(t, "tshe-")
	client, _ := exporterInNetns(t, ctx, ns, bin, "--path.procfs="+t.TempDir())
	_, mfs := scrape(t, client)
	for _, f := range []string{"netstat", "snmp", "sockstat", "net.core.somaxconn"} {
		if v, ok := gaugeOrCounter(mfs, "tcpstate_kernel_read_errors_total", map[string]string{"file": f}); !ok || v < 1 {
			t.Errorf("kernel read errors of %s = %v (present %v) with an empty --path.procfs, want at least 1", f, v, ok)
		}
	}
	for _, name := range []string{"tcpstate_netstat_listen_overflows_total", "tcpstate_sysctl", "tcpstate_orphan_sockets"} {
		if mfs[name] != nil {
			t.Errorf("%s served with an empty --path.procfs: read from /proc", name)
		}
	}
	// The dump does not need procfs: socket counts are still served.
	if mfs["tcpstate_sockets"] == nil {
		t.Error("no tcpstate_sockets")
	}
}

func TestKubeconfigIsUsedOrRefused(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	garbage := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(garbage, []byte("clusters: [this is not a kubeconfig\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Read with --netns=all even when no node name leaves pods
	// unattributed: a broken file is an error, not ignored.
	var stdout, stderr bytes.Buffer
	code := run([]string{"--netns=all", "--kubeconfig=" + garbage, "--web.listen-address=127.0.0.1:0"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), garbage) {
		t.Errorf("--netns=all with a broken kubeconfig: exit %d, stderr %q: want 1 naming the file", code, stderr.String())
	}
	// Refused where nothing reads it.
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webConfig, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--kubeconfig=" + garbage}, "--kubeconfig=" + garbage + ": used only with --netns=all"},
		{[]string{"snapshot", "--netns=all", "--kubeconfig=" + garbage}, "--kubeconfig=" + garbage + ": the snapshot command"},
		{[]string{"snapshot", "--web.config.file=" + webConfig}, "--web.config.file=" + webConfig + ": the snapshot command"},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := run(c.args, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q: want 2 and one line with %q", c.args, code, stderr.String(), c.want)
		}
	}
}
