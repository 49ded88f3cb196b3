#!/usr/bin/env bash
# The container cluster test: three nodes in containers, written to from the
# host while the leader is killed, cut off by a partition and reconnected,
# and a follower is paused. Afterwards every acknowledged write must be on
# all three nodes, whose key-space digests must match.
#
#   tests/container_cluster.sh        (run by .ci/run; needs Docker)
#
# Builds the image and out/raft_client first. Every wait is bounded, and the
# containers and network are removed however the test ends (a TERM included).
set -euo pipefail
cd "$(dirname "$0")/.."
source bin/lib/build.sh

export RUSTYRAFT_CLUSTER=rustyraft-test-$$
export RUSTYRAFT_PORT=${RUSTYRAFT_TEST_PORT:-42379}
cluster=$RUSTYRAFT_CLUSTER
started=$SECONDS

finish() {
  local status=$?
  if ((status != 0)); then
    echo "FAILED after $((SECONDS - started)) s; the last log lines of each node:" >&2
    for node in 1 2 3; do
      echo "--- $cluster-$node" >&2
      docker logs --tail 15 "$cluster-$node" 2>&1 | sed 's/^/  /' >&2 || true
    done
  fi
  bin/docker_run --down >/dev/null 2>&1 || echo "warning: could not remove cluster $cluster" >&2
  exit "$status"
}
trap finish EXIT
trap 'exit 143' TERM INT

step() { echo "== [$((SECONDS - started)) s] $*"; }

# Runs raft_client inside node $1's container, against that node only.
inside() {
  local node=$1
  shift
  timeout 20 docker exec "$cluster-$node" raft_client "$@" --endpoints 127.0.0.1:2379
}

# "member leader term commit applied revision" as node $1 reports them;
# nothing when it does not answer.
status_of() {
  { inside "$1" status 2>/dev/null || true; } |
    awk 'NR == 2 && $2 ~ /^[0-9]+$/ { print $2, $3, $4, $5, $6, $7 }'
}

# Column $2 (1 member, 2 leader, 3 term, 4 commit, 5 applied) of node $1's status.
field() {
  local value
  value=$(status_of "$1" | awk -v column="$2" '{ print $column }')
  [[ -n $value ]] || fail "node $1 does not answer status"
  echo "$value"
}

# Waits until the nodes $@ agree on a leader among them, and prints it.
leader_among() {
  local deadline=$((SECONDS + 30)) node leader agreed
  while ((SECONDS < deadline)); do
    leader="" agreed=0
    for node in "$@"; do
      read -r _ seen _ <<<"$(status_of "$node")" || true
      [[ ${seen:-0} != 0 ]] || continue
      [[ -z $leader || $leader == "$seen" ]] || { agreed=0; break; }
      leader=$seen
      agreed=$((agreed + 1))
    done
    if ((agreed == $#)) && [[ " $* " == *" $leader "* ]]; then
      echo "$leader"
      return
    fi
    sleep 0.3
  done
  fail "nodes $* did not agree on a leader among themselves within 30 s"
}

# Waits until node $1 has applied at least index $2.
caught_up() {
  local deadline=$((SECONDS + 30)) applied
  while ((SECONDS < deadline)); do
    read -r _ _ _ _ applied _ <<<"$(status_of "$1")" || true
    ((${applied:-0} >= $2)) && return
    sleep 0.3
  done
  fail "node $1 did not apply index $2 within 30 s (it reports: $(status_of "$1"))"
}

endpoints_of() {
  local node list=""
  for node in "$@"; do list+="${list:+,}127.0.0.1:$((RUSTYRAFT_PORT + node - 1))"; done
  echo "$list"
}

acknowledged=()
# Writes keys k/$1 .. k/$2 from the host through the published ports of nodes
# ${@:3}; each must be acknowledged.
write() {
  local first=$1 last=$2 key
  shift 2
  for ((key = first; key <= last; key++)); do
    timeout 30 out/raft_client put "k/$key" "v$key" --endpoints "$(endpoints_of "$@")" >/dev/null ||
      fail "put k/$key through nodes $* was not acknowledged"
    acknowledged+=("k/$key")
  done
  echo "   wrote k/$first..k/$last through nodes $*"
}

others() {
  local node
  for node in 1 2 3; do [[ $node == "$1" ]] || echo -n "$node "; done
}

step "build the image (and out/raft_client, which the host writes with)"
bin/docker_build

step "start 3 nodes"
bin/docker_run 3 >/dev/null
leader=$(leader_among 1 2 3)
echo "   leader: node $leader"
write 1 10 1 2 3

step "docker kill the leader (node $leader)"
docker kill "$cluster-$leader" >/dev/null
killed=$leader
# shellcheck disable=SC2046 # two node numbers
leader=$(leader_among $(others "$killed"))
echo "   new leader: node $leader"
# shellcheck disable=SC2046
write 11 20 $(others "$killed")
commit=$(field "$leader" 4)
docker start "$cluster-$killed" >/dev/null
caught_up "$killed" "$commit"
echo "   node $killed restarted and applied up to $commit"

leader=$(leader_among 1 2 3)
step "docker network disconnect the leader (node $leader)"
isolated=$leader
docker network disconnect "$cluster" "$cluster-$isolated"
isolated_commit=$(field "$isolated" 4)
# shellcheck disable=SC2046
leader=$(leader_among $(others "$isolated"))
echo "   the majority elected node $leader (term $(field "$leader" 3))"
# shellcheck disable=SC2046
write 21 30 $(others "$isolated")
if inside "$isolated" put isolated/write lost >/dev/null 2>&1; then
  fail "node $isolated acknowledged a write while cut off from the majority"
fi
now=$(field "$isolated" 4)
((now == isolated_commit)) ||
  fail "node $isolated committed while cut off (commit index $isolated_commit -> $now)"
echo "   node $isolated refused a write and committed nothing (commit index stays $now)"

step "reconnect node $isolated"
docker network connect "$cluster" "$cluster-$isolated"
new_term=$(field "$leader" 3)
commit=$(field "$leader" 4)
caught_up "$isolated" "$commit"
leader=$(leader_among 1 2 3)
[[ $leader != "$isolated" ]] || fail "node $isolated still leads after the partition healed"
term=$(field "$isolated" 3)
((term >= new_term)) || fail "node $isolated is at term $term, behind the new leader's $new_term"
echo "   node $isolated stepped down (follows node $leader at term $term) and applied up to $commit"

paused=$(others "$leader" | cut -d' ' -f1)
step "docker pause a follower (node $paused)"
docker pause "$cluster-$paused" >/dev/null
write 31 40 "$leader"
docker unpause "$cluster-$paused" >/dev/null
commit=$(field "$leader" 4)
caught_up "$paused" "$commit"
echo "   node $paused unpaused and applied up to $commit"

step "every acknowledged write on all three nodes, with equal digests"
leader=$(leader_among 1 2 3)
commit=$(field "$leader" 4)
for node in 1 2 3; do caught_up "$node" "$commit"; done
values=$(timeout 30 out/raft_client get k/ --prefix --endpoints "$(endpoints_of 1 2 3)")
for key in "${acknowledged[@]}"; do
  grep -qx "$key" <<<"$values" || fail "acknowledged key $key is missing"
  grep -A1 -x "$key" <<<"$values" | tail -n 1 | grep -qx "v${key#k/}" || fail "$key has the wrong value"
done
stray=$(timeout 30 out/raft_client get isolated/ --prefix --endpoints "$(endpoints_of 1 2 3)")
[[ -z $stray ]] || fail "the write the isolated node refused was applied after all: $stray"
digests=""
for node in 1 2 3; do
  # "endpoint member hash revision"
  line=$(inside "$node" hash | awk 'NR == 2 { print $3, $4 }')
  echo "   node $node: hash revision = $line"
  digests+="$line"$'\n'
done
(($(sort -u <<<"${digests%$'\n'}" | wc -l) == 1)) || fail "the nodes' digests differ"
echo "PASSED: ${#acknowledged[@]} acknowledged writes on all three nodes in $((SECONDS - started)) s"
