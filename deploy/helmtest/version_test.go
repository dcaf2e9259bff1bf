package helmtest

import (
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
