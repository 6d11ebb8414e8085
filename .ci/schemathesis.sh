#!/usr/bin/env bash
# The live HTTP API against its own /openapi.json: a node in a temporary data dir serves on
# 127.0.0.1, and schemathesis sends it generated requests (valid and invalid), checking that none
# is a 500 and that every answer's status, content type and body are the ones the document gives.
# Needs target/debug/lattice (built by `cargo test`). Bounded: a few examples per operation.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${CARGO_TARGET_DIR:-target}/debug/lattice"
[ -x "$bin" ] || { echo "schemathesis.sh: $bin is not built (run cargo test first)" >&2; exit 1; }
if ! python3 -c "import schemathesis" >/dev/null 2>&1; then
    python3 -m pip install --quiet schemathesis
fi

dir="$(mktemp -d)"
chmod 700 "$dir"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

lattice() { HOME="$dir" "$bin" --data-dir "$dir/data" "$@"; }
lattice init --name schemathesis >/dev/null
# A generous rate, so the run exercises the routes rather than the limiter (429 stays documented).
# The binary itself in the background (not the function), so $! is the process the trap kills.
HOME="$dir" "$bin" --data-dir "$dir/data" serve --bind 127.0.0.1:0 --http 127.0.0.1:0 \
    --http-rate 100000/s --http-burst 100000 </dev/null >/dev/null 2>"$dir/serve.log" &
server=$!
addr=""
for _ in $(seq 1 100); do
    addr="$(sed -n 's|.*HTTP API on http://||p' "$dir/serve.log" | head -n1)"
    [ -n "$addr" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "schemathesis.sh: serve did not start" >&2; cat "$dir/serve.log" >&2; exit 1; }
# `create-token` is forwarded to the running server over its control socket.
token="$(lattice create-token default --permissions rw)"

# The watch route streams until the client leaves, which a request/response fuzzer cannot
# judge; its document entry is checked by the unit test of openapi.rs.
st=(schemathesis); command -v schemathesis >/dev/null || st=(python3 -m schemathesis.cli)
# Every `{store}` is the store the token is for, so requests reach the handlers (403 for other
# stores is covered by the integration tests). 50 examples per operation and phase; `timeout`
# bounds the whole run whatever the machine's load.
# Run from the temp dir: schemathesis keeps a cache (.schemathesis/) in its working directory.
config="$PWD/.ci/schemathesis.toml"
cd "$dir"
timeout 110 "${st[@]}" --config-file "$config" run "http://$addr/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path /stores/{store}/watch \
    --max-examples 50 --seed 1 --workers 2 --request-timeout 10 \
    --phases examples,coverage,fuzzing \
    --warnings off
