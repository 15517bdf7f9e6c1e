#!/usr/bin/env bash
# The main job, for now: build `kumo` and run it over the example deployment files: check each,
# show a group spec (what goes on chain) and the manifest hash, and show how a mistake is
# reported. (Later: a local devnet, a deployment on it, and its service answering.)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --quiet -p kumo-cli
kumo=target/release/kumo

for f in examples/*.yaml; do
  "$kumo" sdl check "$f"
done

echo
echo "== group specs of examples/hello-web.yaml (what goes on chain) =="
"$kumo" sdl groups examples/hello-web.yaml
echo "== manifest hash =="
"$kumo" sdl hash examples/hello-web.yaml

echo
echo "== a mistake, reported with its field and line =="
bad=$(mktemp)
trap 'rm -f "$bad"' EXIT
sed 's/port: 80$/port: 70000/' examples/hello-web.yaml >"$bad"
if "$kumo" sdl check "$bad"; then
  echo "demo: the broken file was accepted" >&2
  exit 1
fi
echo "(rejected, as it should be)"
