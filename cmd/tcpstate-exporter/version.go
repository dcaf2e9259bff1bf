package main

import (
	"github.com/prometheus/common/version"

	"github.com/tcpstate/tcpstate-exporter"
)

// stampVersion sets the version that --version, the landing page, the
// start-up log line and tcpstate_build_info report, in every build path:
// the Dockerfile sets version.Version and version.Revision with -ldflags -X
// (from the VERSION file and its REVISION build argument); any other build
// (go run, go build, go install) takes the version from the VERSION file
// embedded in the binary, and the revision from the build's VCS stamp
// (version.GetRevision reads vcs.revision from runtime/debug.ReadBuildInfo;
// go run stamps it with -buildvcs=true, go build by default).
func stampVersion() {
	if version.Version == "" {
		version.Version = tcpstate.Version()
	}
}
