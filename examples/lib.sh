# Helpers the example scripts share; each run.sh sources this after cd-ing to the
# repository root. Not meant to be run on its own.

# Call once, first: builds dist/ if it is missing, makes $WORK (a temporary
# directory) and $PIDS (background processes), and arranges that on exit every
# process in $PIDS is stopped, the logs of a failed run are shown, on_cleanup
# runs when the script defines it, and $WORK is removed.
start_example() {
  if [[ ! -f dist/cli/main.js ]]; then
    echo "dist/ is missing; building it (npm run build)" >&2
    npm run build --silent
  fi
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/keymesh-$1.XXXXXX")"
  PIDS=()
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

cleanup() {
  local code=$?
  if ((code != 0)); then
    for log in "$WORK"/*.log; do [[ -s "$log" ]] && { echo "--- last lines of $(basename "$log")"; tail -n 10 "$log"; }; done >&2
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if declare -F on_cleanup >/dev/null; then on_cleanup; fi
  rm -rf "$WORK"
  exit "$code"
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Prints a keymesh command the way you would type it, then runs it.
keymesh() { printf '$ keymesh %s\n' "$*" >&2; node bin/keymesh.js "$@"; }
# Evaluates a JS expression over JSON on stdin (`j`); prints the result, or exits 1 if it is false.
js() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const j=JSON.parse(s);const r=($1);if(r===false)process.exit(1);if(r!==true&&r!==undefined)console.log(r)})"; }
# GETs a URL, an https:// one verified with the CA file $2 (the control plane's tls.crt);
# prints the body, and fails unless the answer is 2xx.
fetch_ok() {
  node -e "const [u, ca] = process.argv.slice(1); const m = require(u.startsWith('https:') ? 'https' : 'http');
    m.get(u, ca ? { ca: require('fs').readFileSync(ca) } : {}, (r) => { let b = ''; r.on('data', (d) => (b += d)).on('end', () => { process.stdout.write(b); process.exit(r.statusCode < 300 ? 0 : 1) }) })
      .on('error', () => process.exit(1))" "$1" "${2:-}"
}
# Retries a command quietly until it succeeds, for at most $1 seconds.
wait_until() {
  local limit=$1; shift
  local until=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > until)); then echo "gave up waiting for: $*" >&2; return 1; fi
    sleep 0.2
  done
}
# N free loopback ports: the OS picks them (bind to port 0, read the port back, release it).
free_ports() {
  node -e "const net=require('net');const n=+process.argv[1];const ss=[];let k=0;
    for(let i=0;i<n;i++){const s=net.createServer();ss.push(s);s.listen(0,'127.0.0.1',()=>{if(++k===n){console.log(ss.map(x=>x.address().port).join(' '));ss.forEach(x=>x.close())}})}" "$1"
}
