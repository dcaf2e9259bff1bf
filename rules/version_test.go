package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runbookURL matches any link to a runbook of this project, whatever the
// branch or tag.
var runbookURL = regexp.MustCompile(`https://github\.com/tcpstate/tcpstate-exporter/blob/[^/\s]+/docs/runbooks/[^\s"']*`)

// TestRunbookURLsFollowVersion checks that every runbook link in the rules
// and in their promtool tests points at the release's tag from the VERSION
// file, not at a branch: a runbook link then always shows the runbook of the
// rules that fired.
func TestRunbookURLsFollowVersion(t *testing.T) {
	tests, err := filepath.Glob(filepath.Join("tests", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range append([]string{rulesFile}, tests...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, u := range runbookURL.FindAllString(line, -1) {
				n++
				if !strings.HasPrefix(u, runbookPrefix) {
					t.Errorf("%s:%d: %s does not start with %s (run go generate ./rules)", f, i+1, u, runbookPrefix)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no runbook links found in the rules or their tests")
	}
}
