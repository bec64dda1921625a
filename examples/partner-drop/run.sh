#!/usr/bin/env bash
# keymesh partner drops: acme seals a file for globex with a KMS data key, globex
# opens it, initech is refused; then an x25519 key's public half lets a partner
# seal offline, and globex opens that too. The audit log shows every step.
# See README.md beside this file. Run from anywhere in a checkout after `npm ci`:
#
#   examples/partner-drop/run.sh
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
start_example partner-drop
SIZE_MB="${SIZE_MB:-8}" # size of the file acme sends, in MiB
sha() { sha256sum "$1" | cut -c1-16; }
# A refusal is what we want here: non-zero exit, one line on stderr, no OUT file.
expect_refusal() {
  local out=$1; shift
  local err
  if err="$(node bin/keymesh.js "$@" 2>&1 >/dev/null)"; then
    echo "UNEXPECTED: that succeeded" >&2; return 1
  fi
  echo "refused, as it should be: $err"
  [[ "$(printf '%s\n' "$err" | wc -l)" == 1 ]] || { echo "UNEXPECTED: more than one line on stderr" >&2; return 1; }
  [[ ! -e "$out" ]] || { echo "UNEXPECTED: $out exists" >&2; return 1; }
  echo "(and no $(basename "$out") was written)"
}
read -r CP_PORT ACME_API GLOBEX_API INITECH_API ACME_T GLOBEX_T INITECH_T <<<"$(free_ports 7)"

step "1. control plane on 127.0.0.1:$CP_PORT (data in $WORK/cp)"
# The development master key goes beside the work directory, not into ~/.config/keymesh.
export KEYMESH_CONFIG_HOME="$WORK/keys"
echo "\$ keymesh control-plane --listen 127.0.0.1:$CP_PORT --data-dir $WORK/cp --log-level warn"
node bin/keymesh.js control-plane --listen "127.0.0.1:$CP_PORT" --data-dir "$WORK/cp" --log-level warn >"$WORK/cp.log" 2>&1 &
PIDS+=($!)
export KEYMESH_CP="https://127.0.0.1:$CP_PORT"
# Its certificate, made on the first start; the CLI and the agents trust it through this variable.
export KEYMESH_CA_FILE="$WORK/cp/tls.crt"
export KEYMESH_TOKEN_FILE="$WORK/cp/admin.token"
wait_until 20 fetch_ok "$KEYMESH_CP/healthz" "$KEYMESH_CA_FILE"

step "2. an aead key for partner files: acme may make data keys with it, globex may decrypt, initech gets nothing"
keymesh key create partner-files --type aead
keymesh key grant partner-files --service acme --allow generate-data-key
keymesh key grant partner-files --service globex --allow decrypt
keymesh key grants partner-files
for s in acme globex initech; do
  keymesh join-token create --service "$s" --json | js 'j.token' >"$WORK/$s.token"
done
echo "(one-time join tokens written to $WORK/{acme,globex,initech}.token)"

step "3. an agent beside each service, each with its local API (--api)"
agent() {
  local name=$1 tunnel=$2 api=$3
  echo "\$ keymesh agent --service $name --api 127.0.0.1:$api …"
  node bin/keymesh.js agent --cp "$KEYMESH_CP" --cp-key-file "$WORK/cp/identity.pub" --log-level warn \
    --service "$name" --join-token-file "$WORK/$name.token" --state-dir "$WORK/$name-agent" \
    --tunnel-listen "127.0.0.1:$tunnel" --api "127.0.0.1:$api" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
agent acme "$ACME_T" "$ACME_API"
agent globex "$GLOBEX_T" "$GLOBEX_API"
agent initech "$INITECH_T" "$INITECH_API"
# Each agent's API is on loopback TCP: the CLI sends the agent's token, read from
# STATE_DIR/api.token (0600) through --state-dir.
connected() { node bin/keymesh.js agent status --api "$1" --state-dir "$2" --json | js "j.ready && j.controlPlane.state === 'connected'"; }
wait_until 30 connected "127.0.0.1:$ACME_API" "$WORK/acme-agent"
wait_until 30 connected "127.0.0.1:$GLOBEX_API" "$WORK/globex-agent"
wait_until 30 connected "127.0.0.1:$INITECH_API" "$WORK/initech-agent"
echo "(all three agents enrolled and connected)"

step "4. acme seals a ${SIZE_MB} MiB file for globex (a fresh data key from the KMS, wrapped in the drop's header)"
node -e "const c=require('crypto');const fs=require('fs');const fd=fs.openSync(process.argv[1],'w');for(let i=0;i<+process.argv[2];i++)fs.writeSync(fd,c.randomBytes(1<<20));fs.closeSync(fd)" "$WORK/report.bin" "$SIZE_MB"
keymesh drop seal --api "127.0.0.1:$ACME_API" --state-dir "$WORK/acme-agent" --key partner-files --to globex "$WORK/report.bin" -o "$WORK/report.drop"
ls -l "$WORK/report.bin" "$WORK/report.drop" | awk '{print $5, $9}'

step "5. globex opens it: its agent asks the control plane to unwrap the data key (globex is the named recipient and holds decrypt)"
keymesh drop open --api "127.0.0.1:$GLOBEX_API" --state-dir "$WORK/globex-agent" "$WORK/report.drop" -o "$WORK/globex-report.bin"
echo "sha256 sent:   $(sha "$WORK/report.bin")…"
echo "sha256 opened: $(sha "$WORK/globex-report.bin")…"
cmp -s "$WORK/report.bin" "$WORK/globex-report.bin" && echo "MATCH" || { echo "MISMATCH" >&2; exit 1; }

step "6. initech tries to open the same drop"
echo "\$ keymesh drop open --api 127.0.0.1:$INITECH_API --state-dir $WORK/initech-agent $WORK/report.drop -o $WORK/initech-report.bin"
expect_refusal "$WORK/initech-report.bin" drop open --api "127.0.0.1:$INITECH_API" --state-dir "$WORK/initech-agent" "$WORK/report.drop" -o "$WORK/initech-report.bin"
echo "and a drop with one byte changed, opened by globex:"
node -e "const fs=require('fs');const b=fs.readFileSync(process.argv[1]);b[b.length-5]^=1;fs.writeFileSync(process.argv[2],b)" "$WORK/report.drop" "$WORK/tampered.drop"
echo "\$ keymesh drop open --api 127.0.0.1:$GLOBEX_API --state-dir $WORK/globex-agent $WORK/tampered.drop -o $WORK/tampered.bin"
expect_refusal "$WORK/tampered.bin" drop open --api "127.0.0.1:$GLOBEX_API" --state-dir "$WORK/globex-agent" "$WORK/tampered.drop" -o "$WORK/tampered.bin"

step "7. an x25519 key: globex publishes its public half; an outside partner seals offline"
keymesh key create globex-inbox --type x25519
keymesh key grant globex-inbox --service globex --allow decrypt
keymesh key public globex-inbox -o "$WORK/globex-inbox.pub"
cat "$WORK/globex-inbox.pub"
echo "(the partner needs only that file: no control plane, no agent, no token; here it seals from stdin)"
echo "\$ cat invoice.txt | keymesh drop seal --recipient-key globex-inbox.pub --to globex --from partner - -o invoice.drop"
printf 'invoice 2024-117: 3 widgets, EUR 42.00\n' >"$WORK/invoice.txt"
(unset KEYMESH_CP KEYMESH_TOKEN_FILE; node bin/keymesh.js drop seal --recipient-key "$WORK/globex-inbox.pub" --to globex --from partner - -o "$WORK/invoice.drop" <"$WORK/invoice.txt")
echo "globex opens it (the control plane derives the file key from the header) and streams it to stdout:"
keymesh drop open --api "127.0.0.1:$GLOBEX_API" --state-dir "$WORK/globex-agent" "$WORK/invoice.drop" -o -
echo "initech tries:"
expect_refusal "$WORK/initech-invoice.txt" drop open --api "127.0.0.1:$INITECH_API" --state-dir "$WORK/initech-agent" "$WORK/invoice.drop" -o "$WORK/initech-invoice.txt"

step "8. what the audit log recorded: every data key, unwrap and drop key, allowed or denied"
# Each KMS audit entry lists its calls (request id, key version, context hash, error
# code) without any data; the agent's service is in the details.
keymesh audit export --format jsonl | node -e "
  let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{
    for (const line of s.split('\n').filter(Boolean)) {
      const e = JSON.parse(line);
      if (!e.action.startsWith('kms.')) continue;
      const d = e.details || {};
      const calls = (d.calls || []).map(c => Object.fromEntries((d.columns || []).map((k, i) => [k, c[i]])));
      for (const c of calls) console.log('  seq ' + e.seq + '  ' + (d.service || e.actor).padEnd(8) + ' ' + e.action.padEnd(12) + ' ' + e.target.padEnd(18) + ' v' + c.keyVersion + '  ' + e.outcome.padEnd(5) + ' ' + (c.code || '') + '  ctx ' + String(c.contextHash).slice(0, 12) + '…');
    }
  })"
keymesh audit verify

step "result"
echo "acme -> globex drop opened intact; initech refused twice; offline x25519 drop opened by globex"
