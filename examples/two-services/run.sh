#!/usr/bin/env bash
# keymesh, two services: web talks to api through two agents, the pair key rotates
# twice mid-stream, the stream arrives whole, and the audit log shows what happened.
# See README.md beside this file. Run from anywhere in a checkout after `npm ci`:
#
#   examples/two-services/run.sh
#
# Everything listens on 127.0.0.1 on ports the OS hands out, lives in a temporary
# directory, and is stopped and removed on exit (also on Ctrl-C or an error).
set -euo pipefail
umask 077   # token files must be 0600: the CLI and the agent refuse others

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
start_example two-services
RATE="${RATE:-8}" # MiB/s that web streams, until the script has rotated the pair key twice
read -r CP_PORT API_PORT API_TUNNEL API_AGENT_API WEB_TUNNEL WEB_CONNECT WEB_AGENT_API <<<"$(free_ports 7)"

step "1. control plane on 127.0.0.1:$CP_PORT (data in $WORK/cp)"
# The development master key goes beside the work directory, not into ~/.config/keymesh.
export KEYMESH_CONFIG_HOME="$WORK/keys"
echo "\$ keymesh control-plane --listen 127.0.0.1:$CP_PORT --data-dir $WORK/cp --log-level warn"
node bin/keymesh.js control-plane --listen "127.0.0.1:$CP_PORT" --data-dir "$WORK/cp" --log-level warn >"$WORK/cp.log" 2>&1 &
CP_PID=$!
PIDS+=("$CP_PID")
export KEYMESH_CP="https://127.0.0.1:$CP_PORT"
# Its certificate, made on the first start; the CLI and the agents trust it through this variable.
export KEYMESH_CA_FILE="$WORK/cp/tls.crt"
export KEYMESH_TOKEN_FILE="$WORK/cp/admin.token"
# Up when GET /healthz answers; if the process has died there is nothing to wait for.
cp_up() {
  kill -0 "$CP_PID" 2>/dev/null || exit 1
  fetch_ok "$KEYMESH_CP/healthz" "$KEYMESH_CA_FILE"
}
wait_until 20 cp_up
# The operator console, served by the control plane itself. The link signs in once (it is
# not the token); the browser warns about the self-signed certificate of $WORK/cp/tls.crt.
# HOLD=1 keeps everything running at the end, to look around.
keymesh console link --ttl 1h

step "2. policy: web may open connections to api (this creates the web:api pair key, version 1)"
keymesh intention allow web api
keymesh join-token create --service web --json | js 'j.token' >"$WORK/web.token"
keymesh join-token create --service api --json | js 'j.token' >"$WORK/api.token"
echo "(one-time join tokens written to $WORK/web.token and $WORK/api.token)"

step "3. the two toy services: api (checksums what it receives) and, later, web (streams to it)"
node "$HERE/api-service.mjs" "127.0.0.1:$API_PORT" &
PIDS+=($!)

step "4. two agents: api's exposes the api service, web's offers api on 127.0.0.1:$WEB_CONNECT"
agent() {
  local name=$1; shift
  echo "\$ keymesh agent $*"
  node bin/keymesh.js agent --cp "$KEYMESH_CP" --cp-key-file "$WORK/cp/identity.pub" --log-level warn "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
agent api-agent --service api --join-token-file "$WORK/api.token" --state-dir "$WORK/api-agent" \
  --tunnel-listen "127.0.0.1:$API_TUNNEL" --expose "127.0.0.1:$API_PORT" --api "127.0.0.1:$API_AGENT_API"
agent web-agent --service web --join-token-file "$WORK/web.token" --state-dir "$WORK/web-agent" \
  --tunnel-listen "127.0.0.1:$WEB_TUNNEL" --connect "api=127.0.0.1:$WEB_CONNECT" --api "127.0.0.1:$WEB_AGENT_API"
# Ready: enrolled and holding the pair key; web's agent must also know an api agent to dial.
# The agents' APIs are on loopback TCP, so each call carries the agent's token: --state-dir
# points the CLI at STATE_DIR/api.token (0600, readable only by the agent's user).
ready() { node bin/keymesh.js agent status --api "$1" --state-dir "$2" --json | js "j.ready && j.pairs.some(p => p.currentVersion !== null && p.peers >= $3)"; }
wait_until 30 ready "127.0.0.1:$API_AGENT_API" "$WORK/api-agent" 0
wait_until 30 ready "127.0.0.1:$WEB_AGENT_API" "$WORK/web-agent" 1
keymesh agent status --api "127.0.0.1:$WEB_AGENT_API" --state-dir "$WORK/web-agent"

step "5. web streams to api through the tunnel; the pair key rotates twice mid-stream"
node "$HERE/web-client.mjs" "127.0.0.1:$WEB_CONNECT" "$RATE" &
CLIENT=$!
PIDS+=("$CLIENT")
# Both agents hold pair-key version $1, and (where the agent reports it) the open tunnel
# runs on it alone: it re-handshook in band, without dropping the connection.
on_version() {
  local name
  for name in web api; do
    local port="WEB_AGENT_API"; [[ $name == api ]] && port="API_AGENT_API"
    node bin/keymesh.js agent status --api "127.0.0.1:${!port}" --state-dir "$WORK/$name-agent" --json |
      js "j.tunnels.open === 1 && j.pairs.some(p => p.currentVersion === $1 && (p.tunnelKeyVersions ?? [$1]).join() === '$1')" || return 1
  done
}
wait_until 30 on_version 1
sleep 1
for version in 2 3; do
  keymesh pair rotate web api
  wait_until 30 on_version "$version"
  echo "(both agents on version $version; the connection is still open and streaming)"
  sleep 1
done
keymesh agent status --api "127.0.0.1:$WEB_AGENT_API" --state-dir "$WORK/web-agent"
kill -USR1 "$CLIENT" # "that was everything": web half-closes and compares checksums
if wait "$CLIENT"; then RESULT=0; else RESULT=1; fi

step "6. the agents after the stream: the pair is on version 3, no tunnel open"
keymesh agent status --api "127.0.0.1:$WEB_AGENT_API" --state-dir "$WORK/web-agent"
keymesh agent status --api "127.0.0.1:$API_AGENT_API" --state-dir "$WORK/api-agent"

step "7. what the audit log recorded"
# Usage is reported in batches (about once a second); wait for the closed connection's.
has_usage() { node bin/keymesh.js audit query --action agent.usage --json | js 'j.entries.some(e => (e.details?.kinds?.["conn.close"] ?? 0) > 0)'; }
wait_until 20 has_usage || echo "(no usage batch with a closed connection yet)"
keymesh audit tail -n 40
echo
echo "usage batches (action agent.usage), from their details:"
keymesh audit query --action agent.usage --json | js 'j.entries.map(e => { const d = e.details ?? {}; return `  seq ${e.seq}  ${d.service}  batch ${d.seq}  ${JSON.stringify(d.kinds)}  key versions ${(d.keyVersions ?? []).join(",")}  bytes in ${d.bytesIn} out ${d.bytesOut}` }).join("\n")'
keymesh audit verify

step "result"
if ((RESULT == 0)); then
  echo "the stream arrived whole (checksums match) across two pair-key rotations"
else
  echo "the stream did NOT arrive whole (the agents' last log lines follow)" >&2
fi
if [[ -n "${HOLD:-}" ]]; then
  echo "still running (HOLD is set): the console is at $KEYMESH_CP/ui/ ; Ctrl-C stops everything"
  keymesh console link --ttl 1h
  sleep infinity & wait $!
fi
exit "$RESULT"
