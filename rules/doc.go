// Package rules holds the Prometheus recording and alerting rules for
// tcpstate-exporter (tcpstate.rules.yml) and their promtool unit tests
// (tests/*.yml). It has no Go code of its own: its Go tests run promtool and
// check that every alert carries a severity, a summary, a description and a
// runbook that exists under docs/runbooks, linked at the release's tag.
//
// After changing VERSION, or adding a rule, point the runbook links at the
// release's tag and copy the rules into the Helm chart with:
//
//	go generate ./rules
package rules

//go:generate sh -c "sed -i -E \"s#(https://github.com/tcpstate/tcpstate-exporter/blob/)[^/]+(/docs/runbooks/)#\\\\1v$(cat ../VERSION)\\\\2#g\" tcpstate.rules.yml tests/*.yml"
//go:generate ../deploy/helm/sync-files.sh
