#!/usr/bin/env bash
# keymesh, highly available: three control-plane replicas share one PostgreSQL
# database, two agents list all three, a stream runs between two services through
# the agents' tunnel, and the replica the agents are on is killed with SIGKILL.
# The agents move to another replica within seconds, the stream never stops, a
# rotation made on a third replica still reaches them, and the audit log is one
# verified chain. See README.md beside this file. Run from anywhere in a checkout:
#
#   examples/ha/run.sh
#
# It needs PostgreSQL: by default postgres://$USER@127.0.0.1:5432/test (trust auth);
# set KEYMESH_HA_PG to another server/database URL. The script works in a fresh
# schema of its own and drops it on exit. Everything else listens on 127.0.0.1 on
# ports the OS hands out, lives in a temporary directory, and is stopped and
# removed on exit (also on Ctrl-C or an error).
set -euo pipefail
umask 077   # token files must be 0600: the CLI and the agent refuse others

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
start_example ha
RATE="${RATE:-4}" # MiB/s that web streams to api during the run
PG="${KEYMESH_HA_PG:-postgres://$(id -un)@127.0.0.1:5432/test}"
SCHEMA="keymesh_ha_$(node -e "process.stdout.write(require('crypto').randomBytes(5).toString('hex'))")"
STORE="$PG?schema=$SCHEMA"

# Runs one SQL statement on the server (through the pg client keymesh itself uses).
pgq() { node -e "const pg=require('pg');const c=new pg.Client({connectionString:process.argv[1],connectionTimeoutMillis:5000});
  c.connect().then(()=>c.query(process.argv[2])).then(()=>c.end(),e=>{console.error(e.message);process.exit(1)})" "$PG" "$1"; }

on_cleanup() { pgq "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" 2>/dev/null || echo "(could not drop schema $SCHEMA)" >&2; }
read -r CP1 CP2 CP3 API_PORT API_TUNNEL API_AGENT_API WEB_TUNNEL WEB_CONNECT WEB_AGENT_API <<<"$(free_ports 9)"
CP_PORTS=("$CP1" "$CP2" "$CP3")
CP_PIDS=()
CP_URLS="https://127.0.0.1:$CP1,https://127.0.0.1:$CP2,https://127.0.0.1:$CP3"

step "0. PostgreSQL: ${PG%%\?*}, fresh schema $SCHEMA (dropped on exit)"
pgq "SELECT 1" || { echo "PostgreSQL is not answering at $PG; set KEYMESH_HA_PG" >&2; exit 1; }
head -c 32 /dev/urandom >"$WORK/master.key"
chmod 600 "$WORK/master.key"
echo "one master key for every replica: $WORK/master.key"

step "1. three control-plane replicas on the same --store and --master-key-file"
# The first makes a TLS certificate in its data directory; the others serve the same one
# (--tls-cert/--tls-key), so one CA file (KEYMESH_CA_FILE) lets clients trust every replica.
export KEYMESH_CA_FILE="$WORK/cp1/tls.crt"
replica() {
  local n=$1 tls=()
  ((n > 1)) && tls=(--tls-cert "$WORK/cp1/tls.crt" --tls-key "$WORK/cp1/tls.key")
  echo "\$ keymesh control-plane --listen 127.0.0.1:${CP_PORTS[n-1]} --data-dir $WORK/cp$n --store '$STORE' --master-key-file $WORK/master.key ${tls[*]}"
  node bin/keymesh.js control-plane --listen "127.0.0.1:${CP_PORTS[n-1]}" --data-dir "$WORK/cp$n" --store "$STORE" \
    --master-key-file "$WORK/master.key" "${tls[@]}" --log-level warn >"$WORK/cp$n.log" 2>&1 &
  CP_PIDS+=($!)
  PIDS+=($!)
}
# Ready when GET /readyz answers 200 (the store answers); a dead process has nothing to wait for.
cp_ready() {
  kill -0 "${CP_PIDS[$1-1]}" 2>/dev/null || exit 1
  fetch_ok "https://127.0.0.1:${CP_PORTS[$1-1]}/readyz" "$KEYMESH_CA_FILE"
}
replica 1
wait_until 30 cp_ready 1 # the first initialises the schema, the identity and the admin token
replica 2
replica 3
wait_until 30 cp_ready 2
wait_until 30 cp_ready 3
cmp -s "$WORK/cp1/identity.pub" "$WORK/cp2/identity.pub" && cmp -s "$WORK/cp1/identity.pub" "$WORK/cp3/identity.pub"
echo "all three answer /readyz and wrote the same identity.pub: $(cat "$WORK/cp1/identity.pub")"
export KEYMESH_CP="https://127.0.0.1:$CP3" # admin commands go to replica 3
export KEYMESH_TOKEN_FILE="$WORK/cp1/admin.token"

step "2. policy (through replica 3): web may open connections to api"
keymesh intention allow web api
keymesh join-token create --service web --json | js 'j.token' >"$WORK/web.token"
keymesh join-token create --service api --json | js 'j.token' >"$WORK/api.token"

step "3. the api service, and two agents listing all three replicas (--cp $CP_URLS)"
node examples/two-services/api-service.mjs "127.0.0.1:$API_PORT" >"$WORK/api-service.log" 2>&1 &
PIDS+=($!)
agent() {
  local name=$1; shift
  echo "\$ keymesh agent --cp $CP_URLS $*"
  node bin/keymesh.js agent --cp "$CP_URLS" --cp-key-file "$WORK/cp1/identity.pub" --log-level warn "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
agent api-agent --service api --join-token-file "$WORK/api.token" --state-dir "$WORK/api-agent" \
  --tunnel-listen "127.0.0.1:$API_TUNNEL" --expose "127.0.0.1:$API_PORT" --api "127.0.0.1:$API_AGENT_API"
agent web-agent --service web --join-token-file "$WORK/web.token" --state-dir "$WORK/web-agent" \
  --tunnel-listen "127.0.0.1:$WEB_TUNNEL" --connect "api=127.0.0.1:$WEB_CONNECT" --api "127.0.0.1:$WEB_AGENT_API"
# The agents' APIs are on loopback TCP: each call carries the token from STATE_DIR/api.token.
ready() { node bin/keymesh.js agent status --api "$1" --state-dir "$2" --json | js "j.ready && j.controlPlane.state === 'connected' && j.pairs.some(p => p.currentVersion !== null && p.peers >= $3)"; }
wait_until 30 ready "127.0.0.1:$API_AGENT_API" "$WORK/api-agent" 0
wait_until 30 ready "127.0.0.1:$WEB_AGENT_API" "$WORK/web-agent" 1
keymesh agent status --api "127.0.0.1:$WEB_AGENT_API" --state-dir "$WORK/web-agent"

step "4. web streams to api through the tunnel ($RATE MiB/s)"
node examples/two-services/web-client.mjs "127.0.0.1:$WEB_CONNECT" "$RATE" >"$WORK/web-client.log" 2>&1 &
CLIENT=$!
PIDS+=("$CLIENT")
tunnel_open() { node bin/keymesh.js agent status --api "127.0.0.1:$WEB_AGENT_API" --state-dir "$WORK/web-agent" --json | js 'j.tunnels.open === 1'; }
wait_until 30 tunnel_open
sleep 1
echo "(tunnel open, bytes flowing)"

step "5. find the replica the agents are connected to, and kill -9 it"
# The port in the agent's control-plane URL (wss://127.0.0.1:PORT/v1/agent) names the replica.
on_port() { node bin/keymesh.js agent status --api "$1" --state-dir "$2" --json | js 'j.controlPlane.state === "connected" ? new URL(j.controlPlane.url).port : ""'; }
WEB_ON="$(on_port "127.0.0.1:$WEB_AGENT_API" "$WORK/web-agent")"
API_ON="$(on_port "127.0.0.1:$API_AGENT_API" "$WORK/api-agent")"
echo "web's agent is on 127.0.0.1:$WEB_ON, api's agent on 127.0.0.1:$API_ON"
VICTIM=0
for n in 1 2 3; do if [[ "${CP_PORTS[n-1]}" == "$WEB_ON" ]]; then VICTIM=$n; fi; done
((VICTIM > 0)) || { echo "web's agent is on no replica of ours" >&2; exit 1; }
echo "\$ kill -9 ${CP_PIDS[VICTIM-1]}   # replica $VICTIM"
KILLED_AT=$(date +%s%3N)
kill -9 "${CP_PIDS[VICTIM-1]}"
wait "${CP_PIDS[VICTIM-1]}" 2>/dev/null || true
# Watches both agents' /v1/status every 50 ms until both are connected to another replica.
node -e "
  const fs = require('node:fs')
  const [killedAt, gone, ...pairs] = process.argv.slice(1)
  // Each agent's API as ADDRESS=STATE_DIR; the token in STATE_DIR/api.token goes in the Authorization header.
  const apis = pairs.map((p) => { const [api, dir] = p.split('='); return { api, auth: 'Bearer ' + fs.readFileSync(dir + '/api.token', 'utf8').trim() } })
  const on = async ({ api, auth }) => { const s = await (await fetch('http://' + api + '/v1/status', { headers: { authorization: auth } })).json()
    return s.controlPlane.state === 'connected' && new URL(s.controlPlane.url).port !== gone ? s.controlPlane.url : null }
  const tick = async () => {
    const urls = await Promise.all(apis.map((a) => on(a).catch(() => null)))
    if (urls.every(Boolean)) { console.log('both agents reconnected ' + (Date.now() - Number(killedAt)) + ' ms after the kill: ' + urls.join(', ')); return }
    if (Date.now() - killedAt > 30000) { console.error('the agents did not reconnect within 30 s'); process.exit(1) }
    setTimeout(tick, 50)
  }
  tick()" "$KILLED_AT" "$WEB_ON" "127.0.0.1:$WEB_AGENT_API=$WORK/web-agent" "127.0.0.1:$API_AGENT_API=$WORK/api-agent"
keymesh agent status --api "127.0.0.1:$WEB_AGENT_API" --state-dir "$WORK/web-agent"
tunnel_open && echo "(the tunnel is still the one open connection; web keeps streaming)"

step "6. a rotation made on one replica reaches agents connected to another"
NOW_ON="$(on_port "127.0.0.1:$WEB_AGENT_API" "$WORK/web-agent")"
for n in 1 2 3; do if ((n != VICTIM)) && [[ "${CP_PORTS[n-1]}" != "$NOW_ON" ]]; then ADMIN=$n; fi; done
export KEYMESH_CP="https://127.0.0.1:${CP_PORTS[ADMIN-1]}"
echo "(admin commands now go to replica $ADMIN)"
keymesh pair rotate web api
on_v2() {
  local name
  for name in web api; do
    local port="WEB_AGENT_API"; [[ $name == api ]] && port="API_AGENT_API"
    node bin/keymesh.js agent status --api "127.0.0.1:${!port}" --state-dir "$WORK/$name-agent" --json |
      js "j.tunnels.open === 1 && j.pairs.some(p => p.currentVersion === 2 && (p.tunnelKeyVersions ?? [2]).join() === '2')" || return 1
  done
}
wait_until 30 on_v2
echo "(both agents hold version 2, and the open tunnel moved to it in band)"
sleep 1
kill -USR1 "$CLIENT" # "that was everything": web half-closes and compares checksums
if wait "$CLIENT"; then RESULT=0; else RESULT=1; fi
tail -n 2 "$WORK/web-client.log"

step "7. the surviving replicas' metrics, and what the audit log recorded"
for n in 1 2 3; do
  if ((n == VICTIM)); then echo "replica $n: killed"; continue; fi
  echo "replica $n: $(fetch_ok "https://127.0.0.1:${CP_PORTS[n-1]}/metrics" "$KEYMESH_CA_FILE" | grep '^keymesh_cp_agents_connected ' || echo '(no gauge)')"
done
has_usage() { node bin/keymesh.js audit query --action agent.usage --json | js 'j.entries.some(e => (e.details?.kinds?.["conn.close"] ?? 0) > 0)'; }
wait_until 20 has_usage || echo "(no usage batch with the closed connection yet)"
keymesh audit tail -n 25
keymesh audit verify

step "result"
if ((RESULT == 0)); then
  echo "replica $VICTIM was killed mid-stream; the agents failed over, and the stream arrived whole (checksums match)"
else
  echo "the stream did NOT arrive whole (the agents' last log lines follow)" >&2
fi
exit "$RESULT"
