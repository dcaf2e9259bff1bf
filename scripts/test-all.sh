#!/usr/bin/env bash
# Installs what the tests need (Debian packages, helm) and runs every test.
# Needs root: the end-to-end tests create network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
# Without root every real-kernel test would skip and the run would pass.
if [ "$(id -u)" -ne 0 ]; then
  echo "test-all.sh: run as root: the tests create network namespaces" >&2
  exit 1
fi

# Build and test with the toolchain go.mod names (the module proxy serves
# it), also where the go command's configuration says GOTOOLCHAIN=local:
# standard-library fixes come with Go patch releases.
export GOTOOLCHAIN=auto
echo "== $(go version)"

need_pkgs=()
command -v promtool >/dev/null || need_pkgs+=(prometheus)
{ command -v alertmanager || command -v prometheus-alertmanager; } >/dev/null && command -v amtool >/dev/null || need_pkgs+=(prometheus-alertmanager)
command -v hping3 >/dev/null || need_pkgs+=(hping3)
command -v ss >/dev/null && command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v setpriv >/dev/null || need_pkgs+=(util-linux)  # unprivileged-mode test
# events: TestGenerateReproducible regenerates the BPF objects with bpf2go
command -v clang >/dev/null || need_pkgs+=(clang)
command -v llvm-strip >/dev/null || need_pkgs+=(llvm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_pkgs[*]}"
  scripts/apt-install.sh "${need_pkgs[@]}"
fi
export PATH="$PATH:$(go env GOPATH)/bin"
if ! command -v helm >/dev/null; then
  echo "installing helm v3.22.0 (takes a few minutes cold)"
  (cd /tmp && go install helm.sh/helm/v3/cmd/helm@v3.22.0)
fi

# Alertmanager and Prometheus from Debian start as services on install; the
# tests run their own instances on free ports.
systemctl stop prometheus prometheus-alertmanager >/dev/null 2>&1 || true

golangci_lint_version=v2.15.0
if ! golangci-lint version 2>/dev/null | grep -q "version ${golangci_lint_version#v} "; then
  echo "installing golangci-lint ${golangci_lint_version} (takes a few minutes cold)"
  (cd /tmp && go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${golangci_lint_version}")
fi

echo "== gofmt, go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "not gofmt-ed: $unformatted"; exit 1; fi
go vet ./...
echo "== golangci-lint (.golangci.yml: architecture rules, staticcheck, revive, ...)"
golangci-lint run ./...
echo "== govulncheck, offline (scripts/vulncheck.sh)"
scripts/vulncheck.sh
echo "== go test (all packages, real kernel, real Prometheus and Alertmanager)"
# One package at a time: the scenario, load and end-to-end tests time
# detectors and latencies on a 2-core machine and must not share it.
go test -p 1 -count=1 -timeout 40m ./...
echo "== fuzz targets, bounded"
scripts/fuzz-all.sh "${FUZZTIME:-10s}"
echo "== deployment: the image and the chart on a real Kubernetes node"
# Last and alone: it builds Kubernetes on both cores, then runs etcd, an API
# server, a node and Prometheus in a namespace of its own (see the script).
scripts/deploy-test.sh all
