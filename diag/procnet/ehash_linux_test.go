//go:build linux

package procnet

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

const childEhash = "/proc/sys/net/ipv4/tcp_child_ehash_entries"

// A namespace shares the initial namespace's established hash unless
// net.ipv4.tcp_child_ehash_entries was set when it was created; ReadEhash
// tells the two apart.
func TestReadEhashShared(t *testing.T) {
	host, err := NewReader("").ReadEhash()
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("net.ipv4.tcp_ehash_entries needs Linux 6.1 or later: " + err.Error())
	}
	if err != nil || !host.Private || host.Entries <= 0 {
		t.Fatalf("initial namespace: %+v, %v", host, err)
	}
	old, err := os.ReadFile(childEhash)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(old)) != "0" {
		t.Skipf("%s is %s on this node: namespaces get private tables, the shared case cannot be made", childEhash, strings.TrimSpace(string(old)))
	}
	_, path := newNetns(t)
	var got Ehash
	if err := inNetns(t, path, func() (err error) { got, err = NewReader("").ReadEhash(); return err }); err != nil {
		t.Fatal(err)
	}
	if got.Private || got.Entries != host.Entries {
		t.Errorf("new namespace: %+v, want the shared table of %d entries", got, host.Entries)
	}
}

// The private case needs the node-wide sysctl set while the namespace is
// created; it is restored at once (other namespaces created meanwhile get a
// small private table, which is harmless).
func TestReadEhashPrivate(t *testing.T) {
	old, err := os.ReadFile(childEhash)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("net.ipv4.tcp_child_ehash_entries needs Linux 6.1 or later")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(childEhash, []byte("1024"), 0); err != nil {
		t.Fatalf("setting %s: %v", childEhash, err)
	}
	restore := func() {
		if err := os.WriteFile(childEhash, old, 0); err != nil {
			t.Errorf("restoring %s: %v", childEhash, err)
		}
	}
	t.Cleanup(restore)
	_, path := newNetns(t)
	restore()
	var got Ehash
	if err := inNetns(t, path, func() (err error) { got, err = NewReader("").ReadEhash(); return err }); err != nil {
		t.Fatal(err)
	}
	if !got.Private || got.Entries != 1024 {
		t.Errorf("namespace created with %s=1024: %+v", childEhash, got)
	}
}
