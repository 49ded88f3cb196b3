#!/usr/bin/env bash
# Compares the Raft core's speed at two commits: builds core_bench at <rev>
# and at HEAD (each in a worktree of its own), runs them in turn, A B A B,
# and prints the median of each figure and the ratios HEAD / <rev>.
#
#   bench/core_compare.sh <rev> [--against REV | --working-tree]
#                         [--rounds 3] [--ops 2000000] [--members 3]
#                         [--clients "1 256 4096"]
#
# <rev> is the baseline: for a change, the commit before it. The other side
# is HEAD unless --against names another commit, or --working-tree takes
# this checkout as it is (uncommitted changes included), to compare before
# committing. Interleaving matters: this machine's speed drifts by 10-30%
# within minutes, and it moves both sides alike only when they alternate.
#
# Each side is built with its own code's defaults: since 21293ee core_bench
# runs on mimalloc (as the node does); before, on the system allocator. The
# allocator each side used is printed when its core_bench names it.
#
# Builds are kept under target/core_compare/<commit> and reused; the
# worktrees are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 <rev> [--against REV | --working-tree] [--rounds N] [--ops N]" \
    "[--members N] [--clients \"1 256 4096\"]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
base_rev="$1"
shift
against_rev=HEAD
working_tree=""
rounds=3
ops=2000000
members=3
clients_list="1 256 4096"
while [ $# -gt 0 ]; do
  case "$1" in
    --against) against_rev="$2"; shift 2 ;;
    --working-tree) working_tree=yes; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    --ops) ops="$2"; shift 2 ;;
    --members) members="$2"; shift 2 ;;
    --clients) clients_list="$2"; shift 2 ;;
    *) usage ;;
  esac
done
for number in "$rounds" "$ops" "$members"; do
  case "$number" in
    ''|*[!0-9]*|0) echo "--rounds, --ops and --members take positive numbers, not '$number'" >&2; exit 2 ;;
  esac
done

work=target/core_compare
mkdir -p "$work"
worktrees=()
cleanup() {
  for tree in "${worktrees[@]}"; do git worktree remove --force "$tree" 2>/dev/null || true; done
}
trap cleanup EXIT

# Builds core_bench at a commit; prints the binary's path.
build_commit() { # rev
  local commit
  commit=$(git rev-parse --verify "$1^{commit}") || { echo "no such commit: $1" >&2; exit 2; }
  local binary="$work/$commit/release/core_bench"
  if [ ! -x "$binary" ]; then
    local tree="$work/tree-$commit"
    rm -rf "$tree"
    git worktree prune
    git worktree add --detach "$tree" "$commit" >/dev/null 2>&1
    worktrees+=("$tree")
    echo "building core_bench at ${commit:0:12}" >&2
    (cd "$tree" && CARGO_TARGET_DIR="$PWD/../$commit" cargo build --release --bin core_bench >&2)
  fi
  echo "$binary"
}

base_binary=$(build_commit "$base_rev")
base_name=$(git rev-parse --short=12 "$base_rev")
if [ -n "$working_tree" ]; then
  echo "building core_bench from the working tree" >&2
  cargo build --release --bin core_bench >&2
  other_binary=target/release/core_bench
  other_name="working tree"
else
  other_binary=$(build_commit "$against_rev")
  other_name=$(git rev-parse --short=12 "$against_rev")
fi

results="$work/results.txt"
: > "$results"
# Runs one side once; appends "side clients ops_per_s p99_us allocator".
run_once() { # side binary clients
  local output last allocator
  output=$("$2" --members "$members" --ops "$ops" --clients "$3")
  last=$(echo "$output" | tail -1)
  allocator=$(echo "$output" | grep -o 'allocator=[a-z]*' | head -1 | cut -d= -f2 || true)
  echo "$last" | awk -v side="$1" -v alloc="${allocator:-system}" '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); value[kv[1]] = kv[2] }
    print side, value["clients"], value["ops_per_s"], value["p99_us"], alloc
  }' >> "$results"
}

for round in $(seq 1 "$rounds"); do
  for clients in $clients_list; do
    # Alternate which side goes first, round by round.
    if [ $((round % 2)) -eq 1 ]; then
      run_once base "$base_binary" "$clients"; run_once other "$other_binary" "$clients"
    else
      run_once other "$other_binary" "$clients"; run_once base "$base_binary" "$clients"
    fi
    echo "round $round, $clients clients: done" >&2
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
figure() { # side clients column
  awk -v side="$1" -v clients="$2" -v column="$3" '$1 == side && $2 == clients { print $column }' "$results" | median
}
allocator() { awk -v side="$1" '$1 == side { print $5; exit }' "$results"; }

echo
echo "core_bench, $members members, $ops ops, median of $rounds interleaved runs"
echo "A = $base_name (allocator: $(allocator base)), B = $other_name (allocator: $(allocator other))"
echo
echo "| clients | A ops/s | A p99 µs | B ops/s | B p99 µs | B/A ops/s | B/A p99 |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for clients in $clients_list; do
  a_ops=$(figure base "$clients" 3); a_p99=$(figure base "$clients" 4)
  b_ops=$(figure other "$clients" 3); b_p99=$(figure other "$clients" 4)
  awk -v c="$clients" -v ao="$a_ops" -v ap="$a_p99" -v bo="$b_ops" -v bp="$b_p99" 'BEGIN {
    printf "| %s | %.0f | %.1f | %.0f | %.1f | %.2fx | %.2fx |\n", c, ao, ap, bo, bp, bo / ao, bp / ap
  }'
done
