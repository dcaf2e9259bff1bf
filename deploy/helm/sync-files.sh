#!/usr/bin/env bash
# Copies the Prometheus rules and Grafana dashboards from the repository root
# into the chart, because Helm's .Files can only read files inside the chart:
#   rules/tcpstate.rules.yml -> deploy/helm/tcpstate-exporter/files/tcpstate.rules.yml
#   dashboards/*.json        -> deploy/helm/tcpstate-exporter/files/dashboards/
# Run it after changing either source; go test ./deploy/... fails while the
# copies are stale. A missing source is an error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
chart_files="${root}/deploy/helm/tcpstate-exporter/files"

rules="${root}/rules/tcpstate.rules.yml"
cp "${rules}" "${chart_files}/tcpstate.rules.yml"
echo "copied rules/tcpstate.rules.yml"

shopt -s nullglob
dashboards=("${root}"/dashboards/*.json)
if (( ${#dashboards[@]} == 0 )); then
  echo "sync-files.sh: dashboards/ holds no *.json" >&2
  exit 1
fi
mkdir -p "${chart_files}/dashboards"
# Replace the whole set, so a dashboard removed at the source leaves the
# chart too.
rm -f "${chart_files}"/dashboards/*.json
cp "${dashboards[@]}" "${chart_files}/dashboards/"
echo "copied ${#dashboards[@]} dashboard(s) from dashboards/"
