#!/usr/bin/env bash
# The main job: start a local devnet (a validator and a provider on this machine), deploy
# examples/hello-web.yaml on it, fetch the service's URL, show the lease's status and logs,
# close the lease, and shut the devnet down.
#
# Needs a Docker engine, curl and Debian's busybox-static (the example's image is built from it
# here, so no registry is needed). Run as root, it installs what is missing; otherwise it says
# exactly what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s ==\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
root() { [ "$(id -u)" -eq 0 ]; }

# --- prerequisites -------------------------------------------------------------------------
missing=()
# The engine: answering already, or installable (a docker client alone, as some machine images
# have, cannot start one).
if ! docker info >/dev/null 2>&1; then
  { command -v docker >/dev/null && command -v dockerd >/dev/null; } || missing+=(docker.io)
fi
command -v curl >/dev/null || missing+=(curl)
# The image needs a statically linked busybox (it runs FROM scratch).
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v cc >/dev/null || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
  root || die "missing: ${missing[*]}. Install them with:  sudo apt-get install ${missing[*]}"
  echo "demo: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || die "cargo is missing: install Rust from https://rustup.rs"
if ! docker info >/dev/null 2>&1; then
  root || die "the Docker engine does not answer. Start it (sudo systemctl start docker) and let
      yourself use it (sudo usermod -aG docker \$USER, then log in again)"
  echo "demo: starting dockerd (log: /var/log/kumo-demo-dockerd.log)"
  setsid nohup dockerd >>/var/log/kumo-demo-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || die "dockerd did not start: see /var/log/kumo-demo-dockerd.log"
fi

say "building kumo (release; a few minutes the first time)"
cargo build --release --locked --quiet -p kumo-cli
kumo=$PWD/target/release/kumo

say "building the example's image kumo-example/hello-web:1 from examples/hello-web/"
ctx=$(mktemp -d)
work=$(mktemp -d)
cleanup() {
  [ -f "$work/devnet/devnet.json" ] && "$kumo" devnet down --home "$work/devnet" --purge >/dev/null 2>&1
  rm -rf "$ctx" "$work"
}
trap cleanup EXIT
cp examples/hello-web/Dockerfile examples/hello-web/index.html "$ctx/"
cp "$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')" "$ctx/busybox"
docker build -q -t kumo-example/hello-web:1 "$ctx" 2>/dev/null

say "starting a devnet: kumo devnet up --detach"
# Containers only (--vm off): hello-web needs no VM, and a KVM probe would cost seconds.
"$kumo" devnet up --home "$work/devnet" --base-port 0 --vm off --detach
# KUMO_NODE, KUMO_HOME, KUMO_FROM=tenant, ...: every command below talks to this devnet.
. "$work/devnet/devnet.env"

say "kumo deploy examples/hello-web.yaml"
"$kumo" deploy examples/hello-web.yaml | tee "$work/deploy.txt"
dseq=$("$kumo" lease list -o json | sed -n 's/.*"dseq": *\([0-9][0-9]*\).*/\1/p' | tail -n 1)
[ -n "$dseq" ] || die "no lease after the deploy"
url=$("$kumo" lease status "$dseq" -o json | grep -o 'http://[^"]*' | head -n 1)
[ -n "$url" ] || die "the lease has no URL"

say "curl $url"
curl -sS --fail --max-time 10 "$url"

say "kumo lease status $dseq"
"$kumo" lease status "$dseq"

say "kumo lease logs $dseq"
"$kumo" lease logs "$dseq" --tail 5

say "kumo lease close $dseq"
"$kumo" lease close "$dseq"

say "kumo devnet down"
"$kumo" devnet down --home "$work/devnet" --purge
rm -rf "$ctx" "$work"
trap - EXIT
echo
echo "demo: done. Try it yourself: kumo devnet up, then follow what it prints."
