package tcpstate

import (
	"regexp"
	"strings"
	"testing"
)

// semver is the shape of a release version: MAJOR.MINOR.PATCH with an
// optional pre-release.
var semver = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

func TestVersion(t *testing.T) {
	v := Version()
	if !semver.MatchString(v) {
		t.Fatalf("VERSION holds %q, want a semantic version such as 0.1.0 (no leading v)", v)
	}
	if versionFile != v+"\n" {
		t.Errorf("VERSION is %q, want the version and one newline", versionFile)
	}
	if got := RunbookBase(); !strings.HasSuffix(got, "/blob/v"+v+"/docs/runbooks/") {
		t.Errorf("RunbookBase() = %q, want the tag v%s", got, v)
	}
}
