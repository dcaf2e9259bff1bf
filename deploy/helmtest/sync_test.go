package helmtest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const syncHint = "run deploy/helm/sync-files.sh from the repository root and commit the chart's files/"

// TestChartFilesInSync fails when the chart's copies of the rules and
// dashboards differ from their sources at the repository root. Helm can
// only read files inside the chart, so deploy/helm/sync-files.sh copies
// them there.
func TestChartFilesInSync(t *testing.T) {
	t.Run("rules", func(t *testing.T) {
		src := filepath.Join(repoRoot, "rules", "tcpstate.rules.yml")
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(chartDir, rulesFile))
		if err != nil {
			t.Fatalf("%v: %s", err, syncHint)
		}
		if !bytes.Equal(want, got) {
			t.Errorf("%s differs from rules/tcpstate.rules.yml: %s", rulesFile, syncHint)
		}
	})

	t.Run("dashboards", func(t *testing.T) {
		srcFiles, err := filepath.Glob(filepath.Join(repoRoot, "dashboards", "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(srcFiles) == 0 {
			t.Fatal("dashboards/*.json: no dashboards at the repository root")
		}
		chartFiles, err := filepath.Glob(filepath.Join(chartDir, dashboardGlob))
		if err != nil {
			t.Fatal(err)
		}
		want, got := readAll(t, srcFiles), readAll(t, chartFiles)
		if !cmp.Equal(want, got) {
			var differ []string
			for name := range want {
				if got[name] != want[name] {
					differ = append(differ, name)
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					differ = append(differ, name+" (not in dashboards/)")
				}
			}
			t.Errorf("chart dashboards differ from dashboards/*.json: %q: %s", differ, syncHint)
		}
	})
}

// readAll maps base names to contents.
func readAll(t *testing.T, files []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = string(b)
	}
	return out
}
