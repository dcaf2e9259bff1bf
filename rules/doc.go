// Package rules holds the Prometheus recording and alerting rules for
// tcpstate-exporter (tcpstate.rules.yml) and their promtool unit tests
// (tests/*.yml). It has no Go code of its own: its Go tests run promtool and
// check that every alert carries a severity, a summary, a description and a
// runbook that exists under docs/runbooks.
package rules
