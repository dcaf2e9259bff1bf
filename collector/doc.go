// Package collector turns sock_diag dumps into samples and samples into
// Prometheus metrics.
//
// A Sampler owns all kernel work for one network namespace: on a schedule
// held inside a CPU budget it runs dumps (full ones over every state, cheap
// "rare" ones that skip ESTABLISHED and TIME_WAIT), aggregates each into a
// Sample (counts per family and state, listening sockets) and publishes it.
// The Exporter implements prometheus.Collector by reading the latest
// published samples: a scrape never starts a dump, so concurrent scrapes do
// not multiply kernel work and scrape latency does not grow with the number
// of sockets.
package collector
