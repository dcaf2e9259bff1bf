// Package alerts turns the detectors' findings into alerts with the
// semantics of Prometheus's alerting rules, and publishes them three ways.
//
// An Engine receives, after each evaluation, the findings of one target (a
// sampled network namespace, with its labels) and keeps each alert's state
// as Prometheus does: a new finding makes a pending alert whose activeAt is
// the evaluation time; it fires once it has been present for the finding's
// For; it stays while the finding is present; when the finding is gone a
// pending alert is dropped and a firing one is resolved. Resolved alerts are
// kept (and resent to Alertmanager with their endsAt) for a retention of 15
// minutes by default, like Prometheus's resolvedRetention.
//
// An alert's identity is its label set: alertname, severity, the finding's
// labels and the target's labels (target labels win over finding labels
// with the same name; alertname and severity always come from the finding).
// Labels with empty values are absent, as in Prometheus. Label names that are
// not valid Prometheus label names are sanitized (invalid characters become
// underscores); names starting with "__" and the name "alertstate" are
// reserved and dropped from a finding's labels.
//
// Annotations are summary, description, runbook_url (the runbook for the
// alert name under docs/runbooks in the project's repository) and one
// annotation per evidence entry under the evidence's own key, sanitized like
// a label name. Evidence never overrides summary, description or
// runbook_url: an evidence key equal to one of those is stored with the
// prefix "evidence_".
//
// The Engine is published as:
//   - an HTTP handler serving the alerts as JSON in the shape of Prometheus's
//     GET /api/v1/alerts (Handler);
//   - a prometheus.Collector exposing tcpstate_alert, one series of value 1
//     per pending or firing alert, like Prometheus's ALERTS series;
//   - PostableAlerts handed to a Sender, normally a Notifier, which pushes
//     them to Alertmanager's v2 API. Firing alerts are resent every resend
//     delay with endsAt four resend delays (or evaluation intervals) ahead,
//     so that Alertmanager resolves them by itself if this process dies;
//     resolved alerts are sent with endsAt set to the time they resolved.
//
// External labels (for example instance=<hostname>) are added by the
// Notifier to what it pushes, only to labels the alert does not already
// have. They are not part of /alerts or tcpstate_alert: Prometheus adds its
// own target labels when it scrapes.
package alerts
