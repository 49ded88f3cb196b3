#!/usr/bin/env bash
# Runs the same closed-loop load (raft_client bench, 256-byte puts) against a
# 3-node etcd and a 3-node RustyRaft cluster on loopback, both fsyncing every
# commit, and prints a side-by-side table with ratios.
#
#   bench/compare_etcd.sh [--secs S] [--rounds R] [--clients "1 64 256"]
#                         [--value-size B] [--read] [--floor] [--tls]
#
# Both clusters run side by side (the idle one costs next to nothing) and
# each round runs every client count against one and then the other,
# alternating which goes first, so that a machine whose speed drifts by
# 10-30% within minutes (shared hosts do) moves both alike. The table shows
# the median of the rounds for each figure.
#
# --read measures linearizable reads instead, of the keys the puts write
# (each cluster is first filled by a 3-second put run of 256 clients).
#
# --floor adds two rows of serializable reads (answered by the member asked,
# from its own store, with no Raft round, no disk and no forwarding): one
# client at the leader and the largest client count over all members. They
# show what the client API alone costs each system on this machine, the
# floor under any write's latency and the ceiling over any write's
# throughput.
#
# Besides throughput and latency, each row gives what the servers spent per
# operation: CPU time of the three members (user + system, from
# /proc/<pid>/stat, every thread's) and their context switches (voluntary
# and not, summed over /proc/<pid>/task/*/status), read before and after the
# run and divided by the operations it completed. The load generator's own
# CPU is not counted.
#
# One client is measured twice: talking to the leader, and to a follower
# (which forwards to the leader), each found with `raft_client status` just
# before the run; more clients are spread over all three members.
#
# --tls runs both clusters with mutual TLS between members and with clients
# (client certificates required), from a throwaway PKI (`raft_client pki`);
# the load generator presents the same certificate.
#
# Needs `etcd` (Debian package etcd-server) on the PATH. Builds raft_client in
# release mode. Data directories go under target/compare_etcd (a real disk,
# not tmpfs), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=10
rounds=3
clients_list="1 64 256"
value_size=256
read=""
floor=""
tls=""
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) secs="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --clients) clients_list="$2"; shift 2 ;;
    --value-size) value_size="$2"; shift 2 ;;
    --read) read="--read"; shift ;;
    --floor) floor=yes; shift ;;
    --tls) tls=yes; shift ;;
    *) echo "unknown argument: $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
case "$rounds" in
  ''|*[!0-9]*|0) echo "--rounds takes a positive number, not '$rounds'" >&2; exit 2 ;;
esac

command -v etcd >/dev/null || { echo "etcd is not installed: apt-get install etcd-server" >&2; exit 1; }
cargo build --release --bin raft_client >/dev/null
client=./target/release/raft_client
work=target/compare_etcd
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

# With --tls: a throwaway PKI, the flags both servers and the load generator
# take, and https:// URLs.
scheme=http
client_tls=()
etcd_tls=()
rusty_tls=()
if [ -n "$tls" ]; then
  "$client" pki "$work/pki" >/dev/null
  ca="$work/pki/ca.crt" cert="$work/pki/member.crt" key="$work/pki/member.key"
  scheme=https
  client_tls=(--cacert "$ca" --cert "$cert" --key "$key")
  rusty_tls=(--cert-file "$cert" --key-file "$key" --trusted-ca-file "$ca" --client-cert-auth
    --peer-cert-file "$cert" --peer-key-file "$key" --peer-trusted-ca-file "$ca")
  etcd_tls=("${rusty_tls[@]}" --peer-client-cert-auth)
fi

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
    if "$client" put bench/ready yes --endpoints "$1" "${client_tls[@]}" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "cluster at $1 did not become ready" >&2
  return 1
}

etcd_endpoints="$scheme://127.0.0.1:12389,$scheme://127.0.0.1:12399,$scheme://127.0.0.1:12409"
rusty_endpoints="$scheme://127.0.0.1:22389,$scheme://127.0.0.1:22399,$scheme://127.0.0.1:22409"

start_etcd() {
  local cluster=""
  for i in 1 2 3; do cluster+="e$i=$scheme://127.0.0.1:$((12380 + i * 10)),"; done
  cluster=${cluster%,}
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$work/etcd-$i" \
      --listen-client-urls "$scheme://127.0.0.1:$((12379 + i * 10))" \
      --advertise-client-urls "$scheme://127.0.0.1:$((12379 + i * 10))" \
      --listen-peer-urls "$scheme://127.0.0.1:$((12380 + i * 10))" \
      --initial-advertise-peer-urls "$scheme://127.0.0.1:$((12380 + i * 10))" \
      --initial-cluster "$cluster" --initial-cluster-state new "${etcd_tls[@]}" \
      --initial-cluster-token compare >"$work/etcd-$i.log" 2>&1 &
    pids+=($!)
    etcd_pids+=($!)
  done
}

start_rustyraft() {
  local members="1=127.0.0.1:22389,2=127.0.0.1:22399,3=127.0.0.1:22409"
  for i in 1 2 3; do
    RUST_LOG=warn "$client" run "$i" "127.0.0.1:$((22379 + i * 10))" "$members" \
      --data-dir "$work/rustyraft-$i" "${rusty_tls[@]}" >"$work/rustyraft-$i.log" 2>&1 &
    pids+=($!)
    rusty_pids+=($!)
  done
}

clock_ticks=$(getconf CLK_TCK)
# CPU ticks (user + system, all threads) and context switches of the pids,
# summed: "ticks switches".
server_usage() { # pids...
  local ticks=0 switches=0 pid task
  for pid in "$@"; do
    # Fields 14 and 15 of /proc/<pid>/stat, counted after the command name
    # (which may hold spaces) closes with ')'.
    ticks=$((ticks + $(sed -E 's/^.*\) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    for task in /proc/"$pid"/task/*/status; do
      switches=$((switches + $(awk '/ctxt_switches/ { sum += $2 } END { print sum + 0 }' "$task" 2>/dev/null || echo 0)))
    done
  done
  echo "$ticks $switches"
}

# The member that leads (or, with "follower", one that does not), as its
# endpoint; all of them when no member answers as leader.
member_endpoint() { # endpoints leader|follower
  local found
  found=$("$client" status --endpoints "$1" "${client_tls[@]}" 2>/dev/null | awk -v want="$2" 'NR > 1 && $2 ~ /^[0-9]+$/ {
    if ((want == "leader") == ($2 == $3)) { print $1; exit } }')
  if [ -n "$found" ]; then echo "$scheme://$found"; else
    echo "no $2 found among $1; using them all" >&2; echo "$1"; fi
}

# -> "ops_per_s p50_us p99_us cpu_us_per_op switches_per_op"
run_bench() { # endpoints clients op|floor server-pids...
  local endpoints=$1 clients=$2 kind=$read
  if [ "$3" = floor ]; then kind="--read --serializable"; fi
  shift 3
  local connections=$(( clients < 16 ? clients : 16 ))
  local before after last
  before=$(server_usage "$@")
  # shellcheck disable=SC2086
  last=$("$client" bench --endpoints "$endpoints" "${client_tls[@]}" --clients "$clients" \
    --conns "$connections" \
    --secs "$secs" --value-size "$value_size" $kind | tail -1)
  after=$(server_usage "$@")
  echo "$last $before $after" | awk -v hz="$clock_ticks" '{
    for (i = 1; i <= 5; i++) { split($i, kv, "="); value[kv[1]] = kv[2] }
    ops = value["ops"] > 0 ? value["ops"] : 1
    printf "%s %s %s %.1f %.2f\n", value["ops_per_s"], value["p50_us"], value["p99_us"],
      ($8 - $6) * 1e6 / hz / ops, ($9 - $7) / ops
  }'
}

fill() { # endpoints
  if [ -n "$read$floor" ]; then
    "$client" bench --endpoints "$1" "${client_tls[@]}" --clients 256 --conns 16 --secs 3 \
      --value-size "$value_size" >/dev/null
  fi
}

median() { # numbers...
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Not in a command substitution: that subshell would keep the pids.
start_etcd
start_rustyraft
wait_ready "$etcd_endpoints"
wait_ready "$rusty_endpoints"
fill "$etcd_endpoints"
fill "$rusty_endpoints"

# The table's rows: a client count, where the clients connect, and what
# they do (op: the puts, or reads with --read; floor: serializable reads).
rows=()
largest=1
for c in $clients_list; do
  if [ "$c" = 1 ]; then rows+=("1:leader:op" "1:follower:op"); else rows+=("$c:all:op"); fi
  if [ "$c" -gt "$largest" ]; then largest=$c; fi
done
if [ -n "$floor" ]; then
  rows+=("1:leader:floor")
  if [ "$largest" -gt 1 ]; then rows+=("$largest:all:floor"); fi
fi

declare -A results # [system,row] -> "ops p50 p99" lines, one per round
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="etcd rusty"; else order="rusty etcd"; fi
  for row in "${rows[@]}"; do
    IFS=: read -r c where kind <<<"$row"
    for system in $order; do
      if [ "$system" = etcd ]; then
        endpoints=$etcd_endpoints; servers=("${etcd_pids[@]}")
      else
        endpoints=$rusty_endpoints; servers=("${rusty_pids[@]}")
      fi
      if [ "$where" != all ]; then endpoints=$(member_endpoint "$endpoints" "$where"); fi
      figures=$(run_bench "$endpoints" "$c" "$kind" "${servers[@]}")
      results[$system,$row]+="$figures"$'\n'
      echo "round $round, $c clients ($where, $kind), $system: ops/s p50 p99 cpu_us/op switches/op = $figures" >&2
    done
  done
done

column_median() { # system clients column(1-5)
  # shellcheck disable=SC2046
  median $(printf '%s' "${results[$1,$2]}" | awk -v k="$3" 'NF { print $k }')
}

row_label() { # row
  local c where kind label
  IFS=: read -r c where kind <<<"$1"
  label=$c
  if [ "$where" != all ]; then label+=" $where"; fi
  if [ "$kind" = floor ]; then label+=" (floor)"; fi
  echo "$label"
}

printf '\n%s round(s) of %s s each, medians\n' "$rounds" "$secs"
printf '%-22s | %-28s | %-28s | %s\n' "clients" "etcd ops/s  p50 µs  p99 µs" \
  "RustyRaft ops/s  p50 µs  p99 µs" "ratio ops/s  ratio p50"
for row in "${rows[@]}"; do
  IFS=: read -r c where kind <<<"$row"
  label=$(row_label "$row")
  e_ops=$(column_median etcd "$row" 1); e_p50=$(column_median etcd "$row" 2); e_p99=$(column_median etcd "$row" 3)
  r_ops=$(column_median rusty "$row" 1); r_p50=$(column_median rusty "$row" 2); r_p99=$(column_median rusty "$row" 3)
  ratio_ops=$(awk -v a="$r_ops" -v b="$e_ops" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  ratio_p50=$(awk -v a="$r_p50" -v b="$e_p50" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  printf '%-22s | %10.0f %8.0f %8.0f | %15.0f %8.0f %8.0f | %8s× %9s×\n' "$label" "$e_ops" "$e_p50" "$e_p99" \
    "$r_ops" "$r_p50" "$r_p99" "$ratio_ops" "$ratio_p50"
done

printf '\nWhat the three servers spent per operation (CPU: user + system, all threads)\n'
printf '%-22s | %-24s | %-24s | %s\n' "clients" "etcd CPU µs  switches" \
  "RustyRaft CPU µs  switches" "ratio CPU  ratio switches"
for row in "${rows[@]}"; do
  label=$(row_label "$row")
  e_cpu=$(column_median etcd "$row" 4); e_switches=$(column_median etcd "$row" 5)
  r_cpu=$(column_median rusty "$row" 4); r_switches=$(column_median rusty "$row" 5)
  ratio_cpu=$(awk -v a="$r_cpu" -v b="$e_cpu" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  ratio_switches=$(awk -v a="$r_switches" -v b="$e_switches" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  printf '%-22s | %11.1f %10.2f | %16.1f %7.2f | %8s× %14s×\n' "$label" "$e_cpu" "$e_switches" \
    "$r_cpu" "$r_switches" "$ratio_cpu" "$ratio_switches"
done
