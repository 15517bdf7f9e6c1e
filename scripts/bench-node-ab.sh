#!/bin/bash
# Compares `kumo` binaries on `kumo bench node` by alternating runs, one line per run: the
# bench's figures plus the validators' CPU per committed transaction (their CPU ticks over 8 s
# of load, from /proc). This machine's speed swings between runs, so compare alternating runs,
# not one run of each.
#
#   scripts/bench-node-ab.sh ROUNDS BIN... (extra bench arguments in BENCH_ARGS, default
#   `--accounts 1000`; keep --duration at 15 s or more: the CPU sample is 6–14 s into the load)
#
# e.g. cp target/release/kumo /tmp/kumo-before; (change, rebuild); cp target/release/kumo
# /tmp/kumo-after; scripts/bench-node-ab.sh 2 /tmp/kumo-before /tmp/kumo-after
set -euo pipefail
rounds=$1
shift
node_ticks() {
  local n=0
  for p in $(pgrep -f "node run --home /tmp/kumo-bench-node" || true); do
    n=$((n + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$n"
}
out=$(mktemp -d)
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    # shellcheck disable=SC2086
    "$bin" bench node -o json ${BENCH_ARGS:---accounts 1000} >"$out/bench.json" 2>"$out/bench.err" &
    bench=$!
    until grep -q "load:" "$out/bench.err" 2>/dev/null; do
      if ! kill -0 "$bench" 2>/dev/null; then
        echo "$bin bench node failed:" >&2
        cat "$out/bench.err" >&2
        exit 1
      fi
      sleep 0.5
    done
    sleep 6
    t0=$(node_ticks)
    sleep 8
    t1=$(node_ticks)
    wait "$bench"
    python3 - "$bin" "$((t1 - t0))" "$out/bench.json" <<'PY'
import json, sys
name, ticks, path = sys.argv[1].split('/')[-1], int(sys.argv[2]), sys.argv[3]
d = json.load(open(path))
cpu_us = ticks * 10_000 / 8 / d['validators'] / d['committed_txs_per_sec']
print(f"{name} txs/s {d['committed_txs_per_sec']:.0f} p50 {d['finality_ms_p50']:.0f} "
      f"p99 {d['finality_ms_p99']:.0f} blk {d['block_time_ms']:.0f} chain {d['chain_txs_per_sec']:.0f} "
      f"ratio {d['ratio']:.3f} failed {d['failed_txs']} node_cpu_us_per_tx {cpu_us:.1f}")
PY
  done
done
rm -rf "$out"
