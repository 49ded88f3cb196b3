#!/usr/bin/env bash
# Loads a 3-node etcd and a 3-node RustyRaft cluster (default flags, fsync on,
# loopback) with N distinct keys and prints what a store of that size costs
# each, side by side with ratios:
#
#   bench/scale.sh [--keys N] [--systems "etcd rusty"] [--clients C]
#                  [--conns K] [--value-size B] [--secs S]
#
# For each system in turn (one at a time, so that neither slows the other):
# 1. puts/s on the empty store (`raft_client bench`, C clients over K
#    connections, S seconds, 4 keys per client, overwritten);
# 2. the load: N distinct keys (`bench/<client>/<n>`, B-byte values), each
#    written once (`bench --once`); its rate, and the client errors by kind;
# 3. leader changes during the load: how far the highest term moved (a
#    term can also move with no new leader, a failed election);
# 4. puts/s at size: step 1 again, now that the store holds N keys;
# 5. RSS of the three members (VmRSS) and their bytes on disk (du);
# 6. a follower restart: a follower is killed with SIGKILL, the others take
#    S seconds of puts, and the follower is started again; the time from its
#    start until it has applied the leader's commit index;
# 7. a new learner's catch-up: a fourth member is added as a learner and
#    started on an empty data directory; the time until it has applied the
#    leader's commit index (the log before it is compacted, so this is a
#    snapshot transfer on both systems).
# Then the table: one row per figure, one column per system, and the
# RustyRaft/etcd ratio.
#
# The members' logs are kept in the directory SCALE_LOGS names, if set;
# RUST_LOG sets RustyRaft's log level (default warn).
#
# --systems rusty runs RustyRaft alone (no etcd needed): for loads etcd takes
# too long for, 5M keys say. Needs `etcd` (Debian package etcd-server)
# otherwise. Builds raft_client in release mode. Data directories go under
# target/scale (a real disk, not tmpfs), removed at the end; at 2M keys each
# system needs a few GB there.
set -euo pipefail
cd "$(dirname "$0")/.."

keys=2000000
systems="etcd rusty"
clients=256
conns=8
value_size=256
secs=10
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys="$2"; shift 2 ;;
    --systems) systems="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --conns) conns="$2"; shift 2 ;;
    --value-size) value_size="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    *) echo "unknown argument: $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
for number in "$keys" "$clients" "$conns" "$value_size" "$secs"; do
  case "$number" in
    ''|*[!0-9]*|0) echo "expected a positive number, not '$number'" >&2; exit 2 ;;
  esac
done
for system in $systems; do
  case "$system" in
    etcd) command -v etcd >/dev/null || {
      echo "etcd is not installed: apt-get install etcd-server" >&2; exit 1; } ;;
    rusty) ;;
    *) echo "--systems takes etcd and/or rusty, not '$system'" >&2; exit 2 ;;
  esac
done
keys_per_client=$(((keys + clients - 1) / clients))

cargo build --release --bin raft_client >/dev/null
client=${CARGO_TARGET_DIR:-target}/release/raft_client
work=target/scale
rm -rf "$work"
mkdir -p "$work"
declare -A pid_of   # member number -> pid
declare -A figure   # "<system> <figure>" -> value
cleanup() {
  for pid in "${pid_of[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [ -n "${SCALE_LOGS:-}" ]; then mkdir -p "$SCALE_LOGS" && cp "$work"/*.log "$SCALE_LOGS"/ 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Ports apart from the other comparison scripts'.
port() { # system member kind(client|peer)
  local base
  if [ "$1" = etcd ]; then base=14380; else base=24380; fi
  if [ "$3" = client ]; then echo $((base + $2 * 10 - 1)); else echo $((base + $2 * 10)); fi
}
url() { echo "http://127.0.0.1:$(port "$1" "$2" client)"; }
endpoints_of() { # system
  echo "$(url "$1" 1),$(url "$1" 2),$(url "$1" 3)"
}

start_member() { # system member state(new|existing) [cluster]
  local system=$1 member=$2
  if [ "$system" = etcd ]; then
    local cluster=${4:-}
    if [ -z "$cluster" ]; then
      for i in 1 2 3; do cluster+="e$i=http://127.0.0.1:$(port etcd "$i" peer),"; done
      cluster=${cluster%,}
    fi
    etcd --name "e$member" --data-dir "$work/etcd-$member" \
      --listen-client-urls "$(url etcd "$member")" \
      --advertise-client-urls "$(url etcd "$member")" \
      --listen-peer-urls "http://127.0.0.1:$(port etcd "$member" peer)" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(port etcd "$member" peer)" \
      --initial-cluster "$cluster" --initial-cluster-state "$3" \
      --initial-cluster-token scale >>"$work/etcd-$member.log" 2>&1 &
  else
    local members="1=127.0.0.1:$(port rusty 1 client),2=127.0.0.1:$(port rusty 2 client),3=127.0.0.1:$(port rusty 3 client)"
    local join=()
    if [ "$3" = existing ] && [ "$member" -gt 3 ]; then join=(--join); fi
    RUST_LOG=${RUST_LOG:-warn} "$client" run "$member" "127.0.0.1:$(port rusty "$member" client)" "$members" \
      --data-dir "$work/rusty-$member" "${join[@]}" >>"$work/rusty-$member.log" 2>&1 &
  fi
  pid_of[$member]=$!
}

# `raft_client status` of one endpoint as "member leader term commit applied".
status_of() { # endpoint
  "$client" status --endpoints "$1" 2>/dev/null | awk 'NR == 2 && NF == 7 { print $2, $3, $4, $5, $6 }'
}

highest_term() { # system
  local highest=0 term
  for i in 1 2 3; do
    term=$(status_of "$(url "$1" "$i")" | awk '{ print $3 }')
    if [ -n "$term" ] && [ "$term" -gt "$highest" ]; then highest=$term; fi
  done
  echo "$highest"
}

wait_ready() { # system
  for _ in $(seq 1 300); do
    if "$client" put scale-ready yes --endpoints "$(endpoints_of "$1")" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "the $1 cluster did not become ready; the ends of its logs:" >&2
  for log in "$work"/"$1"-*.log; do echo "== $log" >&2; tail -5 "$log" >&2; done
  return 1
}

# The member number (1-3) of the leader, and of one follower.
leader_and_follower() { # system
  local leader="" follower="" line
  for i in 1 2 3; do
    line=$(status_of "$(url "$1" "$i")")
    [ -n "$line" ] || continue
    read -r member leads _ <<<"$line"
    if [ "$member" = "$leads" ]; then leader=$i; else follower=$i; fi
  done
  echo "$leader $follower"
}

commit_of() { # endpoint
  status_of "$1" | awk '{ print $4 }'
}

# Seconds from now until the member at endpoint has applied index target.
time_to_apply() { # endpoint target
  local start now applied
  start=$(date +%s.%N)
  for _ in $(seq 1 12000); do
    applied=$(status_of "$1" | awk '{ print $5 }')
    if [ -n "$applied" ] && [ "$applied" -ge "$2" ]; then
      now=$(date +%s.%N)
      echo "$now - $start" | bc -l | xargs printf '%.2f'
      return 0
    fi
    sleep 0.05
  done
  echo "timeout"
}

bench_figure() { # system name extra-arguments...
  local system=$1 name=$2
  shift 2
  local output
  output=$("$client" bench --endpoints "$(endpoints_of "$system")" --clients "$clients" \
    --conns "$conns" --value-size "$value_size" "$@")
  echo "$output" >"$work/$system-$name.out"
  figure["$system $name ops/s"]=$(echo "$output" | tail -1 | tr ' ' '\n' | sed -n 's/^ops_per_s=//p')
  figure["$system $name errors"]=$(echo "$output" | sed -n 's/^errors=//p')
  # A killed member's connections fail by design: not counted as errors.
  if [ "$name" != during-restart ]; then
    echo "$output" | grep '^error count=' | sed "s/^/  $system $name: /" >>"$work/error-kinds" || true
  fi
}

rss_and_disk() { # system
  local rss=0 kb
  for i in 1 2 3; do
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/${pid_of[$i]}/status")
    rss=$((rss + kb))
  done
  figure["$1 rss MB"]=$((rss / 1024))
  local bytes
  bytes=$(du -sb "$work/$1-1" "$work/$1-2" "$work/$1-3" | awk '{ sum += $1 } END { printf "%.0f\n", sum }')
  figure["$1 disk MB"]=$((bytes / 1024 / 1024))
}

run_system() { # system
  local system=$1
  echo "== $system: starting 3 members" >&2
  for i in 1 2 3; do start_member "$system" "$i" new; done
  wait_ready "$system"

  echo "== $system: puts/s on the empty store ($secs s)" >&2
  bench_figure "$system" empty --secs "$secs" --keys-per-client 4
  local term_before
  term_before=$(highest_term "$system")
  echo "== $system: loading $((keys_per_client * clients)) keys" >&2
  local began ended
  began=$(date +%s.%N)
  bench_figure "$system" load --once --keys-per-client "$keys_per_client" --secs 36000
  ended=$(date +%s.%N)
  figure["$system load s"]=$(echo "$ended - $began" | bc -l | xargs printf '%.0f')
  figure["$system term moves"]=$(($(highest_term "$system") - term_before))
  echo "== $system: puts/s at size ($secs s)" >&2
  bench_figure "$system" sized --secs "$secs" --keys-per-client 4
  rss_and_disk "$system"

  local leader follower
  read -r leader follower <<<"$(leader_and_follower "$system")"
  echo "== $system: restarting follower $follower (leader $leader)" >&2
  kill -9 "${pid_of[$follower]}"
  wait "${pid_of[$follower]}" 2>/dev/null || true
  bench_figure "$system" during-restart --secs "$secs" --keys-per-client 4
  local target
  target=$(commit_of "$(url "$system" "$leader")")
  start_member "$system" "$follower" existing
  figure["$system restart s"]=$(time_to_apply "$(url "$system" "$follower")" "$target")

  echo "== $system: adding a learner" >&2
  if [ "$system" = etcd ]; then
    local cluster=""
    for i in 1 2 3 4; do cluster+="e$i=http://127.0.0.1:$(port etcd "$i" peer),"; done
    # etcd refuses a member while one restarted less than 5 s ago
    # ("unhealthy cluster"): ask again until it takes it.
    local added=""
    for _ in $(seq 1 60); do
      if ETCDCTL_API=3 etcdctl --endpoints "$(endpoints_of etcd)" member add e4 --learner \
        --peer-urls "http://127.0.0.1:$(port etcd 4 peer)" >"$work/member-add.out" 2>&1; then
        added=yes
        break
      fi
      sleep 1
    done
    [ -n "$added" ] || { cat "$work/member-add.out" >&2; exit 1; }
    target=$(commit_of "$(url etcd "$leader")")
    start_member etcd 4 existing "${cluster%,}"
  else
    "$client" members add 4 "127.0.0.1:$(port rusty 4 client)" --learner \
      --endpoints "$(endpoints_of rusty)" >"$work/member-add.out"
    target=$(commit_of "$(url rusty "$leader")")
    start_member rusty 4 existing
  fi
  figure["$system learner s"]=$(time_to_apply "$(url "$system" 4)" "$target")

  for i in "${!pid_of[@]}"; do kill -9 "${pid_of[$i]}" 2>/dev/null || true; done
  for i in "${!pid_of[@]}"; do wait "${pid_of[$i]}" 2>/dev/null || true; done
  pid_of=()
  rm -rf "$work/$system"-[0-9]
}

for system in $systems; do run_system "$system"; done

ratio() { # rusty etcd
  if [[ "$1" =~ ^[0-9.]+$ ]] && [[ "$2" =~ ^[0-9.]+$ ]] && [ "$(echo "$2 > 0" | bc -l)" = 1 ]; then
    echo "$1 / $2" | bc -l | xargs printf '%.2fx'
  else
    echo "-"
  fi
}
echo
echo "$((keys_per_client * clients)) keys of $value_size B, $clients clients over $conns connections, 3 members"
printf '%-32s | %18s | %18s | %s\n' figure etcd RustyRaft "RustyRaft/etcd"
for name in "empty ops/s" "load ops/s" "load s" "load errors" "term moves" \
  "sized ops/s" "sized errors" "rss MB" "disk MB" "restart s" "learner s"; do
  e=${figure["etcd $name"]:--}
  r=${figure["rusty $name"]:--}
  printf '%-32s | %18s | %18s | %s\n' "$name" "$e" "$r" "$(ratio "$r" "$e")"
done
r_empty=${figure["rusty empty ops/s"]:-}
r_sized=${figure["rusty sized ops/s"]:-}
if [ -n "$r_empty" ] && [ -n "$r_sized" ]; then
  echo "RustyRaft puts/s at size / empty: $(ratio "$r_sized" "$r_empty")"
fi
if [ -s "$work/error-kinds" ]; then
  echo "client errors by kind:"
  cat "$work/error-kinds"
fi
