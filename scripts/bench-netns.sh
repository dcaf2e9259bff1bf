#!/usr/bin/env bash
# Measures --netns=all at node scale: NS namespaces (default 100) holding
# SOCKETS ESTABLISHED sockets in all (default 1000000), first sharing the
# kernel's established hash (the default), then each with a private one
# (net.ipv4.tcp_child_ehash_entries=EHASH, default 16384, set only while the
# namespaces are created and restored at once). For each, the real exporter
# runs with default flags (--netns=all, 1 s interval, 0.05 budget) in the
# agent's own namespace; after WARMUP_SECONDS (40) the script measures the
# process's CPU share over MEASURE_SECONDS (60) and reads /metrics: the
# schedule's plan and achieved interval per kind, whether the budget holds
# it, the process's own CPU ratio, the interval between the two latest
# samples of each kind per namespace, and the measured cost of one full
# dump of a namespace, with the load average at the end. Prints a table
# (markdown); the /metrics of each run are left in OUT_DIR (/tmp). Needs root, sockfill and the
# exporter (built here), and takes the machine-wide lock itself unless
# BENCH_LOCK_HELD=1 says the caller holds /tmp/bench.lock.
#
# With TEST_1M=1 it then runs the opt-in 1M-socket host-mode SYN flood
# scenario (go test -run TestHostSynFloodAt1M ./collector/netns/).
#
# MODES (default "shared private") picks the runs; EXPORTER_FLAGS adds
# flags to the exporter's.
#
#   scripts/bench-netns.sh
set -euo pipefail
# go.mod names the toolchain (a newer Go 1.26 patch); let go fetch it.
export GOTOOLCHAIN=auto
cd "$(dirname "$0")/.."
if [ "${BENCH_LOCK_HELD:-}" != 1 ]; then
  exec env BENCH_LOCK_HELD=1 flock /tmp/bench.lock "$0" "$@"
fi
nns=${NS:-100}
total=${SOCKETS:-1000000}
ehash=${EHASH:-16384}
warmup=${WARMUP_SECONDS:-40}
measure=${MEASURE_SECONDS:-60}
port=${PORT:-9875}
per_ns=$(( total / nns / 2 )) # connections per namespace, two sockets each

tmp=$(mktemp -d)
names=()
pids=()
child_path=/proc/sys/net/ipv4/tcp_child_ehash_entries
child_orig=$(cat "$child_path")
cleanup() {
  echo "$child_orig" > "$child_path" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for n in "${names[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/sockfill" ./internal/fixture/cmd/sockfill
go build -o "$tmp/exporter" ./cmd/tcpstate-exporter

# metric NAME MATCH: the values of NAME series whose labels contain MATCH.
metric() { grep "^$1{" "$tmp/metrics" | grep -F -- "$2" | awk '{print $NF}' || true; }
# series NAME KIND INODE: the value of NAME for a kind (or none) and a
# namespace, empty when absent.
series() {
  grep "^$1{" "$tmp/metrics" | { if [ -n "$2" ]; then grep -F "kind=\"$2\""; else cat; fi; } | grep -F "netns=\"$3\"" | awk '{print $NF}' || true
}
# stats: n, median, max of numbers on standard input.
stats() { sort -g | awk '{v[NR]=$1} END{if(NR==0){print "0 - -"; exit} printf "%d %.3f %.3f\n", NR, v[int((NR+1)/2)], v[NR]}'; }

run() {
  local mode=$1
  names=(); pids=()
  local t0; t0=$(date +%s)
  [ "$mode" = private ] && echo "$ehash" > "$child_path"
  for i in $(seq 1 "$nns"); do
    local n="tsbn-$$-$i"
    ip netns add "$n"
    names+=("$n")
  done
  echo "$child_orig" > "$child_path"
  local eh; eh=$(ip netns exec "${names[0]}" cat /proc/sys/net/ipv4/tcp_ehash_entries)
  mkfifo "$tmp/hold.$mode"
  exec 9<>"$tmp/hold.$mode"
  for i in $(seq 0 $(( nns - 1 ))); do
    ip -n "${names[$i]}" link set lo up
    "$tmp/sockfill" -netns "${names[$i]}" -family ipv4 -conns "$per_ns" -port-base 2000 -tune <&9 >"$tmp/ready.$i" 2>"$tmp/err.$i" &
    pids+=($!)
  done
  for i in $(seq 0 $(( nns - 1 ))); do
    until grep -q ready "$tmp/ready.$i" 2>/dev/null; do
      kill -0 "${pids[$i]}" 2>/dev/null || { cat "$tmp/err.$i" >&2; exit 1; }
      sleep 0.2
    done
  done
  local inodes=()
  for n in "${names[@]}"; do inodes+=("$(stat -L -c %i "/run/netns/$n")"); done
  echo "== $mode: $nns namespaces x $(( per_ns * 2 )) sockets up in $(( $(date +%s) - t0 ))s; tcp_ehash_entries in one: $eh" >&2

  # shellcheck disable=SC2086 # EXPORTER_FLAGS is a list of flags
  "$tmp/exporter" --netns=all --web.listen-address=127.0.0.1:$port --log.level=info ${EXPORTER_FLAGS:-} 2>"$tmp/exporter.$mode.log" &
  local exp=$!
  pids+=($exp)
  for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.5; done
  sleep "$warmup"
  local c1 c2 tck; c1=$(awk '{print $14+$15}' /proc/$exp/stat)
  sleep "$measure"
  c2=$(awk '{print $14+$15}' /proc/$exp/stat)
  tck=$(getconf CLK_TCK)
  curl -sf "http://127.0.0.1:$port/metrics" > "$tmp/metrics"
  local share; share=$(awk -v a="$c1" -v b="$c2" -v h="$tck" -v s="$measure" 'BEGIN{printf "%.4f", (b-a)/h/s}')
  local pr; pr=$(grep "^tcpstate_schedule_process_cpu_ratio " "$tmp/metrics" | awk '{printf "%.4f", $NF}' || true)
  local row="| $mode | $eh | $share | $pr"
  # Per kind: the plan and the scheduler's achieved interval (moving
  # average over a round of the namespaces).
  for k in listen rare full; do
    row+=" | $(metric tcpstate_schedule_interval_planned_seconds "kind=\"$k\"" | awk '{printf "%.1f", $1}') / $(metric tcpstate_schedule_interval_achieved_seconds "kind=\"$k\"" | awk '{printf "%.1f", $1}') s"
  done
  local ex; ex=$(metric tcpstate_sample_budget_exceeded "" | awk '{s+=$1} END{print s+0}')
  row+=" | $ex"
  # Per namespace of ours: the interval between its two latest samples of
  # each kind, and the cost of a full dump.
  : > "$tmp/iv"; : > "$tmp/ivr"; : > "$tmp/ivf"; : > "$tmp/fc"; : > "$tmp/priv"
  for ino in "${inodes[@]}"; do
    # The counters are read by the cheap path, or by every dump when the
    # plan switched the cheap path off (dumps run every interval).
    local iv; iv=$(series tcpstate_sample_interval_seconds listen "$ino")
    [ -n "$iv" ] || iv=$(series tcpstate_sample_interval_seconds full "$ino")
    [ -n "$iv" ] && echo "$iv" >> "$tmp/iv"
    iv=$(series tcpstate_sample_interval_seconds rare "$ino")
    [ -n "$iv" ] && [ "$iv" != 0 ] && echo "$iv" >> "$tmp/ivr"
    iv=$(series tcpstate_sample_interval_seconds full "$ino")
    [ -n "$iv" ] && [ "$iv" != 0 ] && echo "$iv" >> "$tmp/ivf"
    local cpu n
    cpu=$(series tcpstate_dump_cpu_seconds_total full "$ino")
    n=$(series tcpstate_dumps_total full "$ino")
    if [ -n "$n" ] && [ "$n" != 0 ]; then awk -v c="$cpu" -v n="$n" 'BEGIN{printf "%.4f\n", c/n}' >> "$tmp/fc"; fi
    series tcpstate_netns_private_ehash "" "$ino" >> "$tmp/priv"
  done
  read -r ivn ivmed ivmax < <(stats < "$tmp/iv")
  read -r rn rmed rmax < <(stats < "$tmp/ivr")
  read -r fn fmed fmax < <(stats < "$tmp/ivf")
  read -r fcn fcmed fcmax < <(stats < "$tmp/fc")
  local priv; priv=$(awk '{s+=$1} END{print s+0}' "$tmp/priv")
  local nsn; nsn=$(grep "^tcpstate_netns_namespaces " "$tmp/metrics" | awk '{print $NF}' || true)
  local load; load=$(awk '{print $1, $2, $3}' /proc/loadavg)
  row+=" | $ivmed / $ivmax s | $rmed / $rmax s ($rn) | $fmed / $fmax s ($fn) | $fcmed s ($fcn) | $priv/$nns | $nsn | $load |"
  echo "$row" >> "$tmp/table"
  echo "$row" >&2
  cp "$tmp/metrics" "${OUT_DIR:-/tmp}/bench-netns.$mode.metrics" 2>/dev/null || true
  grep -i "budget" "$tmp/exporter.$mode.log" | head -5 >&2 || true

  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exec 9>&-
  rm -f "$tmp/hold.$mode"
  pids=()
  for n in "${names[@]}"; do ip netns del "$n"; done
  names=()
}

{
  echo "| hash | tcp_ehash_entries | agent CPU share (/proc, budget 0.05) | tcpstate_schedule_process_cpu_ratio | cheap path planned / achieved | rare planned / achieved | full planned / achieved | kinds over budget | cheap path per namespace (median / max) | rare per namespace (median / max, namespaces) | full per namespace (median / max, namespaces) | CPU per full dump of a namespace (median, namespaces) | private hash reported | namespaces sampled | load average |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} > "$tmp/table"
for mode in ${MODES:-shared private}; do run "$mode"; done
cat "$tmp/table"

if [ "${TEST_1M:-}" = 1 ]; then
  TCPSTATE_TEST_1M=1 TCPSTATE_BENCH_LOCK_HELD=1 FIXTURE_SOCKFILL="$tmp/sockfill" \
    go test -p 1 -count=1 -timeout 30m -run TestHostSynFloodAt1M -v ./collector/netns/
fi
