package main

import (
	"io"
	"strings"
	"testing"

	"github.com/prometheus/common/version"

	"github.com/tcpstate/tcpstate-exporter"
)

// TestBuildInfoVersion checks that tcpstate_build_info carries the VERSION
// file's version and a revision in a build that sets neither with -ldflags
// (go test, like go run and go build).
func TestBuildInfoVersion(t *testing.T) {
	a := testAgent(t)
	mfs, err := a.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "tcpstate_build_info" {
			continue
		}
		found = true
		labels := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != tcpstate.Version() {
			t.Errorf("tcpstate_build_info version=%q, want %q from VERSION", labels["version"], tcpstate.Version())
		}
		if labels["revision"] == "" {
			t.Error("tcpstate_build_info has an empty revision")
		}
		if !strings.HasPrefix(labels["goversion"], "go1.") {
			t.Errorf("tcpstate_build_info goversion=%q", labels["goversion"])
		}
	}
	if !found {
		t.Fatal("no tcpstate_build_info")
	}
}

// TestStampVersionKeepsLdflags checks that a version set with -ldflags -X
// (the Dockerfile's) wins over the embedded VERSION file.
func TestStampVersionKeepsLdflags(t *testing.T) {
	old := version.Version
	t.Cleanup(func() { version.Version = old })
	version.Version = "9.9.9-test"
	if _, _, err := parseFlags(nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if version.Version != "9.9.9-test" {
		t.Errorf("version.Version = %q after parseFlags, want the -ldflags value kept", version.Version)
	}
	version.Version = ""
	stampVersion()
	if version.Version != tcpstate.Version() {
		t.Errorf("version.Version = %q, want %q from VERSION", version.Version, tcpstate.Version())
	}
}
