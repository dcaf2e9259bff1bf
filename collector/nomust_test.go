package collector

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoMustConstMetrics keeps the panicking const-metric constructors out
// of the module's non-test code: their label values come from outside the
// agent, and a panic in Collect drops the rest of the scrape (issue 10).
func TestNoMustConstMetrics(t *testing.T) {
	banned := map[string]bool{
		"MustNewConstMetric": true, "MustNewConstHistogram": true, "MustNewConstSummary": true,
		"MustNewConstMetricWithCreatedTimestamp": true, "MustNewConstHistogramWithCreatedTimestamp": true,
		"MustNewConstSummaryWithCreatedTimestamp": true, "MustNewConstNativeHistogram": true,
		"MustNewMetricWithExemplars": true,
	}
	root := filepath.Join("..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || n == "vendor" || (strings.HasPrefix(n, ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && banned[sel.Sel.Name] {
				t.Errorf("%s: %s panics on a bad label value; use the error-returning form and count the error", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("checked only %d files: is the module root %s?", checked, root)
	}
}
