#!/usr/bin/env bash
# Benchmarks the exporter's sampling side by side with a raw-dump floor and
# node_exporter's tcpstat approach, at each socket count given (default
# 100000 and 1000000), in a network namespace of its own. Needs root.
#
#   scripts/bench.sh [SOCKETS ...]
#
# Modes: floor (raw dump reading only the state byte), exporter (a full
# sample: dump, aggregation, kernel counters, detectors), exporter-quiet (the
# same with the accept-queue threshold above the fixture's never-accepting
# listeners, so no finding is built), nodeexporter (node_exporter's tcpstat approach), and floor-v2 and
# exporter-v2: the same with two SOCK_DIAG_BY_FAMILY requests instead of one
# legacy TCPDIAG_GETSOCK walk, and halfopen: the half-open sweep (ESTABLISHED
# only, with INET_DIAG_INFO) after one full sample.
# Each mode runs in its own process (so its peak RSS is its own), modes
# interleaved round-robin for ROUNDS rounds (default 3) of SAMPLES samples
# (default 3) after a warm-up. Then the real exporter runs in the namespace
# with default flags while concurrent scrapers measure /metrics latency.
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(100000 1000000)
rounds=${ROUNDS:-3}
samples=${SAMPLES:-3}
per_proc=18000 # client descriptors per sockfill process: 2 sockets each

tmp=$(mktemp -d)
ns=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/sockfill" ./internal/fixture/cmd/sockfill
go build -o "$tmp/diagbench" ./internal/bench/diagbench
go build -o "$tmp/exporter" ./cmd/tcpstate-exporter

for total in "${counts[@]}"; do
  ns="tsbench-$$-$total"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  conns=$(( total / 2 ))
  procs=$(( (conns + per_proc - 1) / per_proc ))
  echo "== $total ESTABLISHED sockets: $procs sockfill processes" >&2
  t0=$(date +%s)
  mkfifo "$tmp/hold"
  exec 9<>"$tmp/hold"
  pids=()
  left=$conns
  for i in $(seq 0 $(( procs - 1 ))); do
    c=$(( left < per_proc ? left : per_proc ))
    left=$(( left - c ))
    tune=""; [ "$i" -eq 0 ] && tune="-tune"
    "$tmp/sockfill" -netns "$ns" -family ipv4 -conns "$c" -port-base $(( 2000 + i * 8 )) $tune <&9 >"$tmp/ready.$i" 2>"$tmp/err.$i" &
    pids+=($!)
    # the first process tunes the namespace; let it finish before the rest
    if [ "$i" -eq 0 ]; then
      until grep -q ready "$tmp/ready.0" 2>/dev/null; do
        kill -0 "${pids[0]}" 2>/dev/null || { cat "$tmp/err.0" >&2; exit 1; }
        sleep 0.2
      done
    fi
  done
  for i in $(seq 0 $(( procs - 1 ))); do
    until grep -q ready "$tmp/ready.$i" 2>/dev/null; do
      kill -0 "${pids[$i]}" 2>/dev/null || { cat "$tmp/err.$i" >&2; exit 1; }
      sleep 0.2
    done
  done
  echo "   fixture up in $(( $(date +%s) - t0 ))s; ss says $(ip netns exec "$ns" ss -tanH state established | wc -l) established" >&2

  for r in $(seq 1 "$rounds"); do
    for mode in floor exporter exporter-quiet nodeexporter floor:v2 exporter:v2 halfopen; do
      method=auto
      case "$mode" in *:v2) method=v2; mode=${mode%:v2} ;; esac
      ip netns exec "$ns" "$tmp/diagbench" -mode "$mode" -method "$method" -n "$samples" | sed "s/^{/{\"round\":$r,\"target\":$total,/" | tee -a "$tmp/results.jsonl" >&2
    done
  done

  # The real exporter with default flags, scraped concurrently while it samples.
  ip netns exec "$ns" "$tmp/exporter" --web.listen-address=127.0.0.1:9874 --log.level=warn &
  exp=$!
  pids+=($exp)
  for _ in $(seq 1 600); do
    ip netns exec "$ns" "$tmp/diagbench" -mode scrape -url http://127.0.0.1:9874/-/ready -duration 1ms -concurrency 1 >/dev/null 2>&1 && break
    sleep 0.5
  done
  # The exporter's whole process CPU at default settings, without scrapes,
  # over IDLE_SECONDS after a warm-up long enough to plan full dumps.
  sleep "${WARMUP_SECONDS:-20}"
  t1=$(awk '{print $14+$15}' /proc/$exp/stat)
  sleep "${IDLE_SECONDS:-60}"
  t2=$(awk '{print $14+$15}' /proc/$exp/stat)
  tck=$(getconf CLK_TCK)
  echo "{\"target\":$total,\"mode\":\"idle\",\"process_cpu_share\":$(awk -v a="$t1" -v b="$t2" -v h="$tck" -v s="${IDLE_SECONDS:-60}" 'BEGIN{printf "%.4f", (b-a)/h/s}')}" | tee -a "$tmp/results.jsonl" >&2
  ip netns exec "$ns" "$tmp/diagbench" -mode metrics -url http://127.0.0.1:9874/metrics | sed "s/^{/{\"target\":$total,/" | tee -a "$tmp/results.jsonl" >&2
  ip netns exec "$ns" "$tmp/diagbench" -mode scrape -url http://127.0.0.1:9874/metrics -duration "${SCRAPE_SECONDS:-30}s" -concurrency 4 >"$tmp/scrape.json"
  # Then a realistic scrape load over a minute: it spans full dumps, so its
  # latency shows whether sampling slows scrapes down.
  ip netns exec "$ns" "$tmp/diagbench" -mode scrape -url http://127.0.0.1:9874/metrics -duration "${PACED_SECONDS:-70}s" -concurrency 4 -every 250ms \
    | sed "s/^{/{\"target\":$total,/" | tee -a "$tmp/results.jsonl" >&2
  hwm=$(awk '/VmHWM/{print $2}' /proc/$exp/status)
  sed "s/^{/{\"target\":$total,\"exporter_vmhwm_kb\":$hwm,/" "$tmp/scrape.json" | tee -a "$tmp/results.jsonl" >&2
  kill "$exp"; wait "$exp" 2>/dev/null || true

  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exec 9>&-
  rm -f "$tmp/hold"
  pids=()
  ip netns del "$ns"; ns=""
done

"$tmp/diagbench" -mode table < "$tmp/results.jsonl"
