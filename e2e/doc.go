// Package e2e holds the end-to-end proof of the dashboards, the Prometheus
// rules and the exporter's own alerting, run against a real Prometheus and a
// real Alertmanager (Debian's prometheus and prometheus-alertmanager).
//
// The package has no code of its own: everything is in its tests. One test
// network namespace holds the whole stack on its loopback: the exporter, a
// Prometheus that scrapes it every second and evaluates a test copy of
// rules/tcpstate.rules.yml every second, an Alertmanager, a webhook receiver
// served by the test process, and a server that leaks CLOSE_WAIT sockets. The
// test waits until both the exporter's TCPCloseWaitLeak and the rule's reach
// Alertmanager, runs every dashboard query through Prometheus's HTTP API, and
// checks every metric name the dashboards and rules use against the
// exporter's real /metrics.
//
// Run it as root (it creates a network namespace):
//
//	go test -count=1 -v ./e2e/
package e2e
