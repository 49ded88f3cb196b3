#!/usr/bin/env bash
# Runs the Watch and history benchmarks (raft_client watch-bench and
# history-bench) against a 3-node etcd and a 3-node RustyRaft cluster on
# loopback, both fsyncing every commit, and prints the medians side by side
# with RustyRaft/etcd ratios.
#
#   bench/watch_compare.sh [--secs S] [--rounds R] [--watchers "1000 10000"]
#                          [--rate PUTS_PER_SEC] [--streams N]
#                          [--idle-watchers N] [--idle-clients C]
#                          [--keys N] [--versions N] [--skip-fanout]
#                          [--skip-idle] [--skip-history]
#
# Scenarios, each run once per round against each cluster, alternating which
# goes first (A B, then B A) as compare_etcd.sh does, since this machine's
# speed drifts by 10-30% within minutes:
#
# - fan-out: --watchers watchers on one prefix (over --streams streams spread
#   over the members) and --rate puts/s under it, open loop, for --secs:
#   events delivered per second, put-to-event latency p50/p99, and the share
#   of the expected events (acknowledged puts × watchers) that arrived;
# - idle: closed-loop puts (--idle-clients clients, as `raft_client bench`)
#   with no watchers and with --idle-watchers watchers on a prefix the puts
#   never touch: put throughput, and how much the watchers cost each system;
# - history: --keys keys written, noted, overwritten; a Range over all of
#   them at the noted revision (median of 5); --versions more versions
#   written (in transactions of 100 puts); a compaction to the latest
#   revision, physical (the answer waits until the history is dropped);
#   and the members' memory (VmRSS summed over the three) before, after the
#   versions and after the compaction.
#
# A side that fails (RustyRaft before its Watch service exists answers
# Unimplemented) is reported as failed, with its error, and the run goes
# on; every load-generator run is bounded by `timeout`.
#
# Needs `etcd` on the PATH. Builds raft_client in release mode (into
# $CARGO_TARGET_DIR if set, else target/). Data directories go under
# target/watch_compare (a real disk, not tmpfs), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=10
rounds=3
watchers_list="1000 10000"
rate=1000
streams=100
idle_watchers=1000
idle_clients=64
keys=10000
versions=1000000
skip_fanout=""
skip_idle=""
skip_history=""
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) secs="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --watchers) watchers_list="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --streams) streams="$2"; shift 2 ;;
    --idle-watchers) idle_watchers="$2"; shift 2 ;;
    --idle-clients) idle_clients="$2"; shift 2 ;;
    --keys) keys="$2"; shift 2 ;;
    --versions) versions="$2"; shift 2 ;;
    --skip-fanout) skip_fanout=yes; shift ;;
    --skip-idle) skip_idle=yes; shift ;;
    --skip-history) skip_history=yes; shift ;;
    *) echo "unknown argument: $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
for number in "$secs" "$rounds" "$rate" "$streams" "$idle_clients" "$keys" "$versions"; do
  case "$number" in
    ''|*[!0-9]*|0) echo "options take positive numbers, not '$number'" >&2; exit 2 ;;
  esac
done

command -v etcd >/dev/null || { echo "etcd is not installed: apt-get install etcd-server" >&2; exit 1; }
cargo build --release --bin raft_client >/dev/null
client=${CARGO_TARGET_DIR:-target}/release/raft_client
work=target/watch_compare
rm -rf "$work"
mkdir -p "$work"
pids=()
etcd_pids=()
rusty_pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Ports apart from compare_etcd.sh's, so that both can run on one machine.
etcd_endpoints="http://127.0.0.1:13389,http://127.0.0.1:13399,http://127.0.0.1:13409"
rusty_endpoints="http://127.0.0.1:23389,http://127.0.0.1:23399,http://127.0.0.1:23409"

start_etcd() {
  local cluster=""
  for i in 1 2 3; do cluster+="e$i=http://127.0.0.1:$((13380 + i * 10)),"; done
  cluster=${cluster%,}
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$work/etcd-$i" \
      --listen-client-urls "http://127.0.0.1:$((13379 + i * 10))" \
      --advertise-client-urls "http://127.0.0.1:$((13379 + i * 10))" \
      --listen-peer-urls "http://127.0.0.1:$((13380 + i * 10))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((13380 + i * 10))" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token watch-compare >"$work/etcd-$i.log" 2>&1 &
    pids+=($!)
    etcd_pids+=($!)
  done
}

start_rustyraft() {
  local members="1=127.0.0.1:23389,2=127.0.0.1:23399,3=127.0.0.1:23409"
  for i in 1 2 3; do
    RUST_LOG=warn "$client" run "$i" "127.0.0.1:$((23379 + i * 10))" "$members" \
      --data-dir "$work/rustyraft-$i" >"$work/rustyraft-$i.log" 2>&1 &
    pids+=($!)
    rusty_pids+=($!)
  done
}

wait_ready() { # endpoints
  for _ in $(seq 1 100); do
    # A member that exited (a port in use, say) will not come back.
    for pid in "${pids[@]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "a cluster process exited at start-up; its log:" >&2
        grep -l . "$work"/*.log | while read -r log; do
          echo "== $log" >&2; tail -3 "$log" >&2; done
        return 1
      fi
    done
    if "$client" put watchbench-ready yes --endpoints "$1" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "cluster at $1 did not become ready" >&2
  return 1
}

# The members' resident memory, summed, in MiB.
rss_mib() { # pids...
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
  done
  awk -v kib="$total" 'BEGIN { printf "%.0f", kib / 1024 }'
}

# The value of NAME in a `name=value ...` text, or nothing.
field() { # name text
  printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v name="$1" '$1 == name { print $2; exit }'
}

# Runs the load generator with a time limit. Prints its stdout; on failure
# prints nothing, and the reason (its last error line) goes to $work/reason.
bounded() { # seconds args...
  local limit=$1 output status
  shift
  set +e
  output=$(timeout --kill-after=5 "$limit" "$client" "$@" 2>"$work/stderr")
  status=$?
  set -e
  if [ "$status" = 0 ]; then
    printf '%s\n' "$output"
    return 0
  fi
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "timed out after ${limit}s" >"$work/reason"
  else
    { grep -v '^\s*$' "$work/stderr" | tail -1 | cut -c1-160; } >"$work/reason" || true
    [ -s "$work/reason" ] || echo "exit status $status" >"$work/reason"
  fi
  return 1
}

# Results: [system,scenario] -> one line of figures per round, or
# "FAILED: reason" lines.
declare -A results

record() { # system scenario figures|failure
  results[$1,$2]+="$3"$'\n'
  echo "round $round, $2, $1: $3" >&2
}

# -> "events_per_sec p50_ms p99_ms delivered_percent puts_per_sec"
fanout_run() { # system endpoints watchers
  local line
  if ! line=$(bounded $((secs + 120)) watch-bench --endpoints "$2" --watchers "$3" \
    --streams "$streams" --rate "$rate" --secs "$secs" --prefix "watchbench/$3/" | tail -1); then
    record "$1" "fanout:$3" "FAILED: $(cat "$work/reason")"
    return
  fi
  local figures
  figures=$(awk -v a="$(field events_per_sec "$line")" -v b="$(field p50_ms "$line")" \
    -v c="$(field p99_ms "$line")" -v e="$(field events "$line")" \
    -v x="$(field expected_events "$line")" -v p="$(field puts_per_sec "$line")" \
    'BEGIN { printf "%s %s %s %.1f %s", a, b, c, (x > 0 ? 100 * e / x : 0), p }')
  record "$1" "fanout:$3" "$figures"
}

# -> "ops_per_s p99_us"
idle_run() { # system endpoints watchers
  local line
  if ! line=$(bounded $((secs + 120)) watch-bench --idle --endpoints "$2" --watchers "$3" \
    --streams "$streams" --clients "$idle_clients" --conns 16 --secs "$secs" \
    --prefix "watchbench-idle/" | tail -1); then
    record "$1" "idle:$3" "FAILED: $(cat "$work/reason")"
    return
  fi
  record "$1" "idle:$3" "$(field ops_per_s "$line") $(field p99_us "$line")"
}

# -> "old_range_ms latest_range_ms versions_per_sec compact_ms rss_before
#     rss_after_range rss_after_versions rss_after_compact" (MiB)
history_run() { # system endpoints server-pids...
  local system=$1 endpoints=$2 range_line versions_line compact_line before after_range after_versions
  shift 2
  local common=(--endpoints "$endpoints" --prefix "historybench/$round/" --keys "$keys"
    --versions "$versions")
  before=$(rss_mib "$@")
  if ! range_line=$(bounded 900 history-bench --step range "${common[@]}"); then
    record "$system" history "FAILED: $(cat "$work/reason")"; return; fi
  after_range=$(rss_mib "$@")
  if ! versions_line=$(bounded 1800 history-bench --step versions "${common[@]}"); then
    record "$system" history "FAILED: $(cat "$work/reason")"; return; fi
  after_versions=$(rss_mib "$@")
  if ! compact_line=$(bounded 900 history-bench --step compact "${common[@]}"); then
    record "$system" history "FAILED: $(cat "$work/reason")"; return; fi
  # Memory freed by a compaction shows once the server has let it go.
  sleep 2
  record "$system" history "$(field old_range_ms "$range_line") $(field latest_range_ms "$range_line") \
$(field versions_per_sec "$versions_line") $(field compact_ms "$compact_line") $before $after_range \
$after_versions $(rss_mib "$@")"
}

median() { # numbers... ("-" for none)
  printf '%s\n' "$@" | sort -n | awk 'NF { v[++n] = $1 } END {
    if (n == 0) print "-"; else if (n % 2) print v[(n + 1) / 2];
    else print (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

# The median of column K over the rounds that did not fail, or "-".
column_median() { # system scenario column
  # shellcheck disable=SC2046
  median $(printf '%s' "${results[$1,$2]:-}" | awk -v k="$3" 'NF && $1 != "FAILED:" { print $k }')
}

# The first failure of a system in a scenario, if any round failed.
failure() { # system scenario
  printf '%s' "${results[$1,$2]:-}" | grep -m1 '^FAILED: ' | cut -c9- || true
}

ratio() { # a b
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-";
    else printf "%.3g", a / b }'
}

# Not in a command substitution: that subshell would keep the pids.
start_etcd
start_rustyraft
wait_ready "$etcd_endpoints"
wait_ready "$rusty_endpoints"

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="etcd rusty"; else order="rusty etcd"; fi
  for system in $order; do
    if [ "$system" = etcd ]; then endpoints=$etcd_endpoints; else endpoints=$rusty_endpoints; fi
    if [ -z "$skip_fanout" ]; then
      for w in $watchers_list; do fanout_run "$system" "$endpoints" "$w"; done
    fi
  done
  if [ -z "$skip_idle" ]; then
    for w in 0 "$idle_watchers"; do
      for system in $order; do
        if [ "$system" = etcd ]; then endpoints=$etcd_endpoints; else endpoints=$rusty_endpoints; fi
        idle_run "$system" "$endpoints" "$w"
      done
    done
  fi
  if [ -z "$skip_history" ]; then
    for system in $order; do
      if [ "$system" = etcd ]; then
        history_run etcd "$etcd_endpoints" "${etcd_pids[@]}"
      else
        history_run rusty "$rusty_endpoints" "${rusty_pids[@]}"
      fi
    done
  fi
done

# Prints the failures of a scenario under its table.
show_failures() { # scenario
  local system reason
  for system in etcd rusty; do
    reason=$(failure "$system" "$1")
    if [ -n "$reason" ]; then
      printf '  %s failed (%s): %s\n' "$([ "$system" = etcd ] && echo etcd || echo RustyRaft)" "$1" "$reason"
    fi
  done
}

printf '\n%s round(s), medians of the rounds that ran; "-": no round succeeded\n' "$rounds"
if [ -z "$skip_fanout" ]; then
  printf '\nWatch fan-out: %s puts/s for %s s, %s streams over 3 members\n' "$rate" "$secs" "$streams"
  printf '%-9s | %-38s | %-38s | %s\n' watchers "etcd events/s  p50 ms  p99 ms  got %" \
    "RustyRaft events/s  p50 ms  p99 ms  got %" "ratio events/s  ratio p99"
  for w in $watchers_list; do
    s="fanout:$w"
    e=(); r=()
    for k in 1 2 3 4; do e+=("$(column_median etcd "$s" "$k")"); r+=("$(column_median rusty "$s" "$k")"); done
    printf '%-9s | %14s %7s %7s %6s | %18s %7s %7s %6s | %14s %10s\n' "$w" \
      "${e[0]}" "${e[1]}" "${e[2]}" "${e[3]}" "${r[0]}" "${r[1]}" "${r[2]}" "${r[3]}" \
      "$(ratio "${r[0]}" "${e[0]}")" "$(ratio "${r[2]}" "${e[2]}")"
    show_failures "$s"
  done
  echo "goal at 1000 watchers: ratio events/s >= 1, ratio p99 <= 0.5"
fi

if [ -z "$skip_idle" ]; then
  printf '\nPut throughput with idle watchers: %s closed-loop clients for %s s\n' "$idle_clients" "$secs"
  printf '%-9s | %-20s | %-20s | %s\n' watchers "etcd ops/s  p99 µs" "RustyRaft ops/s  p99 µs" "ratio ops/s"
  for w in 0 "$idle_watchers"; do
    s="idle:$w"
    e_ops=$(column_median etcd "$s" 1); e_p99=$(column_median etcd "$s" 2)
    r_ops=$(column_median rusty "$s" 1); r_p99=$(column_median rusty "$s" 2)
    printf '%-9s | %10s %9s | %15s %4s | %s\n' "$w" "$e_ops" "$e_p99" "$r_ops" "$r_p99" \
      "$(ratio "$r_ops" "$e_ops")"
    show_failures "$s"
  done
  drop() { # system
    local none with
    none=$(column_median "$1" idle:0 1); with=$(column_median "$1" "idle:$idle_watchers" 1)
    awk -v a="$none" -v b="$with" 'BEGIN { if (a == "-" || b == "-" || a == 0) print "-";
      else printf "%.1f%%", 100 * (a - b) / a }'
  }
  printf 'throughput lost to %s idle watchers: etcd %s, RustyRaft %s (goal: RustyRaft <= 10%%)\n' \
    "$idle_watchers" "$(drop etcd)" "$(drop rusty)"
fi

if [ -z "$skip_history" ]; then
  printf '\nHistory: %s keys; %s versions; 3 members\n' "$keys" "$versions"
  printf '%-34s | %10s | %10s | %s\n' figure etcd RustyRaft ratio
  labels=("range at old revision, ms" "range at latest, ms" "versions written per s"
    "compact to latest (physical), ms" "RSS before, MiB" "RSS after range step, MiB"
    "RSS after versions, MiB" "RSS after compaction, MiB")
  for k in 1 2 3 4 5 6 7 8; do
    e=$(column_median etcd history "$k"); r=$(column_median rusty history "$k")
    printf '%-34s | %10s | %10s | %s\n' "${labels[$((k - 1))]}" "$e" "$r" "$(ratio "$r" "$e")"
  done
  show_failures history
fi
