#!/usr/bin/env bash
# Builds chat-server and chat-bench and runs the fault matrix
# (`chat-bench faults`, see docs/RELIABILITY.md): two nodes on a PostgreSQL
# cluster and a redis-server of the run's own, clients on both nodes under
# steady load, and after each fault a check that every acknowledged message
# reached every client exactly once, in seq order, and is in history.
#
# It needs PostgreSQL's server binaries (initdb, pg_ctl, psql; the newest
# under /usr/lib/postgresql), redis-server, and, for the network-cut row,
# root and iproute2 (`ip netns`); without them that row is skipped and says
# why. It never touches the machine's own PostgreSQL or Redis: everything it
# starts, it stops, and the cluster and logs are removed at the end.
#
# Environment:
#   FAULTS_QUICK=1     shorter steady periods (3 s instead of 5 s) for CI;
#                      the Redis outage and the cut stay 10 s.
#   FAULTS_RELEASE=1   build and run release binaries.
# Extra arguments go to `chat-bench faults` as they are (e.g. --json,
# --only redis-kill,node-kill, --senders-on both, --keep-logs).
# The exit status is chat-bench's: 1 when a row lost, doubled or reordered
# anything or did not recover, 2 when the run could not be carried out.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

profile=debug
build_flags=()
if [[ "${FAULTS_RELEASE:-0}" == 1 ]]; then
    profile=release
    build_flags=(--release)
fi
cargo build "${build_flags[@]}" -p chat-server -p chat-bench

args=(--server-bin "target/${profile}/chat-server")
if [[ "${FAULTS_QUICK:-0}" == 1 ]]; then
    args+=(--steady 3)
fi
exec "target/${profile}/chat-bench" faults "${args[@]}" "$@"
