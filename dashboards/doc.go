// Package dashboards holds the Grafana dashboards for tcpstate-exporter as
// committed JSON models (overview, listeners, leaks-and-exhaustion, pods,
// alerts). The models are written by a generator that lives in this package's
// tests; its tests also parse every query with the PromQL parser and check the
// metric names against the contract and the recording rules.
//
// Regenerate the JSON files after changing the generator with:
//
//	go test ./dashboards -run TestGenerated -update
package dashboards

//go:generate go test -run TestGenerated -update .
