// Package tcpstate holds what every build of tcpstate-exporter shares: the
// release version, read from the VERSION file at the repository root, which
// is the one place the version is written. The binary's --version and
// tcpstate_build_info, the Helm chart's appVersion and the runbook links of
// alerts all follow it (tests check each).
package tcpstate

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var versionFile string

// Version returns the release version from VERSION, without a leading "v"
// (for example 0.1.0).
func Version() string { return strings.TrimSpace(versionFile) }

// Tag returns the release's git tag: "v" followed by Version.
func Tag() string { return "v" + Version() }

// RunbookBase is the URL prefix of the runbooks of this release: an alert's
// runbook_url is RunbookBase followed by the alert name and ".md". It points
// at the release's tag, so a runbook link always matches the running
// binary's alerts.
func RunbookBase() string {
	return "https://github.com/tcpstate/tcpstate-exporter/blob/" + Tag() + "/docs/runbooks/"
}
