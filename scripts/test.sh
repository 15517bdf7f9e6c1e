#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (unit, integration, Akash's SDL
# conformance suite from ../shared, the workload backend against a real Docker engine when one
# answers), and a build of the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/conformance/akash-sdl ] && [ -z "${KUMO_AKASH_SDL_SUITE:-}" ]; then
  echo "test: Akash's SDL conformance suite is missing: expected ../shared/conformance/akash-sdl beside this checkout (or set KUMO_AKASH_SDL_SUITE)" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

# The Docker workload tests (crates/kumo-workload/tests/docker) need an engine, the test images
# and the local registries. When the engine answers, they are required (a missing piece fails
# the run instead of skipping); when it does not, they print "skipping" and pass, unless
# KUMO_REQUIRE_DOCKER=1 was set already (as .ci/run does).
if docker info >/dev/null 2>&1; then
  step "Docker engine found: test images and registries (scripts/test-images.sh)"
  bash scripts/test-images.sh
  export KUMO_REQUIRE_DOCKER=1
elif [ "${KUMO_REQUIRE_DOCKER:-}" = 1 ]; then
  echo "test: KUMO_REQUIRE_DOCKER=1 but the Docker engine does not answer (docker info failed): start dockerd, or run bash .ci/run as root" >&2
  exit 1
else
  echo "test: no Docker engine answers (docker info): the Docker workload tests will be skipped" >&2
fi

# The VM tests (crates/kumo-vm/tests, crates/kumo-cli/tests/vm_e2e.rs) boot a test guest that
# scripts/vm-test-image.sh builds with debootstrap, as root. Where QEMU is installed and this
# runs as root they are required, as the Docker tests are when an engine answers.
if command -v qemu-system-x86_64 >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export KUMO_REQUIRE_QEMU="${KUMO_REQUIRE_QEMU:-1}"
fi

# Every skipped test appends a line here (tests/skip.rs); the last lines of this script list them.
KUMO_SKIP_LOG="$(mktemp)"
export KUMO_SKIP_LOG
summary() {
  if [ -s "$KUMO_SKIP_LOG" ]; then
    printf '\n==> skipped tests (%s), and why:\n' "$(wc -l <"$KUMO_SKIP_LOG")"
    sort "$KUMO_SKIP_LOG" | uniq -c | sed 's/^ *\([0-9]*\) /  \1x /'
  else
    printf '\n==> skipped tests: none\n'
  fi
  rm -f "$KUMO_SKIP_LOG"
}
trap summary EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "fuzz targets build"
cargo check --manifest-path fuzz/Cargo.toml --locked --quiet
