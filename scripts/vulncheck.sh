#!/usr/bin/env bash
# Runs govulncheck offline: its online database is unreachable from the
# test machines, so the database is built from golang.org/x/vulndb, which
# the Go module proxy serves (data/osv), with vulndb's cmd/indexdb. The
# built database is cached outside the repository, keyed by the vulndb
# version: ${XDG_CACHE_HOME:-$HOME/.cache}/tcpstate-vulndb/<version>.
#
# Exits non-zero when govulncheck finds a vulnerability that the code
# reaches (govulncheck's own exit status). Vulnerabilities in modules that
# are required but not called are listed without failing; bump them all
# the same (go get module@fixed-version).
#
# Bump VULNDB_VERSION to check against newer advisories:
#   go list -m golang.org/x/vulndb@latest
set -euo pipefail
# go.mod names the toolchain (a newer Go 1.26 patch); let go fetch it.
export GOTOOLCHAIN=auto
cd "$(dirname "$0")/.."

vulndb_version="${VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}"
govulncheck_version=v1.9.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tcpstate-vulndb"
db="${cache}/${vulndb_version}"

export PATH="$PATH:$(go env GOPATH)/bin"
if ! govulncheck -version 2>/dev/null | grep -q "govulncheck@${govulncheck_version}"; then
  echo "installing govulncheck ${govulncheck_version}"
  (cd /tmp && go install "golang.org/x/vuln/cmd/govulncheck@${govulncheck_version}")
fi

if [ ! -f "${db}/index/db.json" ]; then
  echo "building the vulnerability database from golang.org/x/vulndb@${vulndb_version} (cached in ${db}; slow the first time)"
  src="$(cd /tmp && go mod download -json "golang.org/x/vulndb@${vulndb_version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [ -z "${src}" ] || [ ! -d "${src}/data/osv" ]; then
    echo "vulncheck.sh: golang.org/x/vulndb@${vulndb_version} has no data/osv" >&2
    exit 1
  fi
  mkdir -p "${cache}"
  tmp="$(mktemp -d "${cache}/build.XXXXXX")"
  trap 'rm -rf "${tmp}"' EXIT
  (cd /tmp && go run "golang.org/x/vulndb/cmd/indexdb@${vulndb_version}" -vulns "${src}/data/osv" -out "${tmp}/db")
  rm -rf "${db}"
  mv "${tmp}/db" "${db}"
fi

echo "govulncheck ${govulncheck_version}, $(go version | cut -d' ' -f3), database golang.org/x/vulndb@${vulndb_version}"
govulncheck -db "file://${db}" ./...
