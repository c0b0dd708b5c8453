#!/usr/bin/env bash
# Runs schemathesis against the OpenAPI document of a freshly started chat
# server and exits with schemathesis's status.
#
# It builds and starts `chat-server` on a free local port with an empty data
# directory (embedded SQLite, generated secrets), registers and signs in a
# user so every request carries `Authorization: Bearer <token>`, then checks
# every documented operation for
#   - not_a_server_error:          no 5xx answer, whatever the input;
#   - response_schema_conformance: every answer matches its documented schema.
# The server is stopped (its PID only) when the script exits, however it exits.
#
# Environment:
#   SCHEMATHESIS_QUICK=1        a short pass for CI: few examples per operation.
#   SCHEMATHESIS_MAX_EXAMPLES   examples per operation (default 25, quick 3).
#   SCHEMATHESIS_SEED           fix the random seed to replay a run.
#   SCHEMATHESIS_VENV           where schemathesis is installed if missing
#                               (default target/schemathesis-venv).
#   SCHEMATHESIS_OUT            logs and the JUnit report
#                               (default target/schemathesis).
#   CHAT_RATE_LIMIT             passed to the server; default `off`, because
#                               schemathesis sends hundreds of sign-ups and
#                               sign-ins from one address and would otherwise
#                               test mostly the 429 answer.
# Extra arguments are passed to `schemathesis run` as they are.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

quick=${SCHEMATHESIS_QUICK:-0}
if [[ $quick == 1 ]]; then
    max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-3}
else
    max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-25}
fi
venv=${SCHEMATHESIS_VENV:-$repo/target/schemathesis-venv}
out=${SCHEMATHESIS_OUT:-$repo/target/schemathesis}
mkdir -p "$out"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }

# schemathesis, in its own virtual environment.
if [[ ! -x $venv/bin/schemathesis ]]; then
    log "installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet schemathesis
fi
log "using $("$venv/bin/schemathesis" --version)"

log "building chat-server"
cargo build --quiet -p chat-server

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"
data_dir=$(mktemp -d)
server_pid=""

cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        # The server drains for its shutdown grace period; do not wait forever.
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$data_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting chat-server on $base (log: $out/server.log)"
CHAT_BIND="127.0.0.1:$port" \
    CHAT_DATA_DIR="$data_dir" \
    CHAT_BCRYPT_COST=10 \
    CHAT_RATE_LIMIT="${CHAT_RATE_LIMIT:-off}" \
    "$repo/target/debug/chat-server" >"$out/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 300); do
    if curl --silent --fail --max-time 1 "$base/health" >/dev/null; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        log "chat-server exited during start-up:"
        tail -n 20 "$out/server.log" >&2
        exit 1
    fi
    sleep 0.2
done
curl --silent --fail --max-time 1 "$base/health" >/dev/null || {
    log "chat-server did not answer GET /health within 60 s"
    exit 1
}

# A user for the authenticated operations.
username="schemathesis$RANDOM"
password="schemathesis-password-$RANDOM"
credentials=$(printf '{"username":"%s","password":"%s"}' "$username" "$password")
curl --silent --show-error --fail --max-time 30 -H 'Content-Type: application/json' \
    -d "$credentials" "$base/api/auth/register" >/dev/null
token=$(curl --silent --show-error --fail --max-time 30 -H 'Content-Type: application/json' \
    -d "$credentials" "$base/api/auth/login" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
log "signed in as $username"

# Signing out would end the session of the token every other operation
# uses, and turn the rest of the run into 401s: the tests of
# crates/chat-transport cover it instead.
args=(
    run "$base/api-docs/openapi.json"
    --checks not_a_server_error,response_schema_conformance
    --header "Authorization: Bearer $token"
    --exclude-path /api/auth/logout
    --max-examples "$max_examples"
    --workers 1
    --request-timeout 30
    --generation-database none
    --report junit
    --report-dir "$out"
    --no-color
)
if [[ -n ${SCHEMATHESIS_SEED:-} ]]; then
    args+=(--seed "$SCHEMATHESIS_SEED")
fi

log "running schemathesis (max examples per operation: $max_examples)"
status=0
"$venv/bin/schemathesis" "${args[@]}" "$@" || status=$?
log "schemathesis exited with status $status"
exit "$status"
