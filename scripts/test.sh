#!/usr/bin/env bash
# The whole test suite: formatting, lints, every crate's tests (unit, integration, Akash's SDL
# conformance suite from ../shared), and a build of the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/conformance/akash-sdl ] && [ -z "${KUMO_AKASH_SDL_SUITE:-}" ]; then
  echo "test: Akash's SDL conformance suite is missing: expected ../shared/conformance/akash-sdl beside this checkout (or set KUMO_AKASH_SDL_SUITE)" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "fuzz targets build"
cargo check --manifest-path fuzz/Cargo.toml --locked --quiet
