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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "fuzz targets build"
cargo check --manifest-path fuzz/Cargo.toml --locked --quiet
