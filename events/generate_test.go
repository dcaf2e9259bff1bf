package events

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateReproducible runs gen.go's bpf2go command into a temporary
// directory and compares every file with the committed one, byte for byte:
// the committed objects are what the committed C sources produce. It needs
// clang and llvm-strip (scripts/test-all.sh installs them).
func TestGenerateReproducible(t *testing.T) {
	for _, tool := range []string{"clang", "llvm-strip", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: cannot check the generated BPF objects: %s is not installed (apt-get install clang llvm)", tool)
		}
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate "); ok {
			args = strings.Fields(rest)
		}
	}
	if len(args) < 3 || args[0] != "go" || args[1] != "tool" {
		t.Fatalf("gen.go has no //go:generate go tool line: %q", args)
	}
	dir := t.TempDir()
	// Flags go before the positional arguments (ident, source).
	cmdArgs := append([]string{"tool", args[2], "-output-dir", dir, "-go-package", "events"}, args[3:]...)
	cmd := exec.Command("go", cmdArgs...)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmdArgs, " "), err, out)
	}
	gen, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(gen) == 0 {
		t.Fatal("bpf2go generated nothing")
	}
	for _, g := range gen {
		name := filepath.Base(g)
		want, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("bpf2go generates %s, which is not committed: %v", name, err)
			continue
		}
		got, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what `go generate ./events` produces (%d bytes, regenerated %d): run go generate and commit", name, len(want), len(got))
		}
	}
	committed, _ := filepath.Glob("tcpevents_*")
	if len(committed) != len(gen) {
		t.Errorf("committed %v, bpf2go generates %d files", committed, len(gen))
	}
}
