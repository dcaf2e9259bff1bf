// Package dashboards holds the Grafana dashboards for tcpstate-exporter as
// committed JSON models (overview, listeners, leaks-and-exhaustion, pods,
// alerts, events). The program in gen/ writes them, and its test checks that the
// committed files are what it writes; this package's tests parse every query
// with the PromQL parser and check the metric names against the contract and
// the recording rules.
//
// Regenerate the JSON files, and their copies in the Helm chart, after
// changing the generator with:
//
//	go generate ./dashboards
package dashboards

//go:generate go run ./gen -out .
//go:generate ../deploy/helm/sync-files.sh
