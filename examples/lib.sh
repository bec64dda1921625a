# Helpers the example scripts share; each run.sh sources this after cd-ing to the
# repository root. Not meant to be run on its own.

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Prints a keymesh command the way you would type it, then runs it.
keymesh() { printf '$ keymesh %s\n' "$*" >&2; node bin/keymesh.js "$@"; }
# Evaluates a JS expression over JSON on stdin (`j`); prints the result, or exits 1 if it is false.
js() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const j=JSON.parse(s);const r=($1);if(r===false)process.exit(1);if(r!==true&&r!==undefined)console.log(r)})"; }
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
