#!/usr/bin/env bash
# Runs every native fuzz target for a bounded time each (default 10s).
set -euo pipefail
# go.mod names the toolchain (a newer Go 1.26 patch); let go fetch it.
export GOTOOLCHAIN=auto
cd "$(dirname "$0")/.."
t="${1:-10s}"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $f ($t)"
    if ! go test -run='^$' -fuzz="^${f}\$" -fuzztime="$t" "$pkg" >/tmp/fuzz.$$.log 2>&1; then
      # Go's fuzz coordinator sometimes reports "context deadline exceeded"
      # when -fuzztime runs out while it waits on a worker, with no failing
      # input. That is retried once; a real failure writes its input to
      # testdata/fuzz and fails at once.
      if grep -q 'context deadline exceeded' /tmp/fuzz.$$.log && ! grep -q 'Failing input written to' /tmp/fuzz.$$.log; then
        echo "fuzz $pkg $f: the fuzz engine timed out without a failing input; retrying once"
        go test -run='^$' -fuzz="^${f}\$" -fuzztime="$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; exit 1; }
      else
        cat /tmp/fuzz.$$.log
        exit 1
      fi
    fi
  done
done
rm -f /tmp/fuzz.$$.log
echo "fuzz: all targets passed"
