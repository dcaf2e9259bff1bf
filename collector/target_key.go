package collector

import "strings"

// Key identifies the target across scrapes and alert evaluations by its
// label values: the Exporter's per-target cache and choice of the targets
// it keeps, and alerts.Target.Key, all use it.
func (t Target) Key() string { return strings.Join(t.Labels, "\x00") }
