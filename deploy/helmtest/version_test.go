package helmtest

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/tcpstate/tcpstate-exporter"
)

// TestChartAppVersion checks that the chart installs the release the
// VERSION file names: appVersion (the image tag by default) equals it.
func TestChartAppVersion(t *testing.T) {
	if got, want := chartAppVersion(t), tcpstate.Version(); got != want {
		t.Errorf("Chart.yaml appVersion %q, want %q from VERSION", got, want)
	}
}

// TestDockerfileToolchain checks that the image is built with the Go release
// go.mod names as its toolchain, which the test command uses and
// govulncheck checks: the official golang images do not switch toolchains
// themselves (GOTOOLCHAIN=local).
func TestDockerfileToolchain(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^toolchain go(\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no toolchain line")
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if want := "golang:" + string(m[1]); stages[0].Image != want {
		t.Errorf("builder image %s, want %s (go.mod's toolchain)", stages[0].Image, want)
	}
}
