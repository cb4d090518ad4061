#!/usr/bin/env bash
# One prepared check for a machine with a GPU: build, name the adapter, time bench-small on wgpu
# and on flex, run the quick preset and a 200-iteration default run on wgpu, and write every
# figure to one file. Usage, from the repository root:
#   bash benches/gpu-check.sh [OUT_FILE]        (default: gpu-check.txt)
# The build is the slow part (about 30 min from nothing on 2 cores, a few on 16); everything after
# it is bounded to under 5 minutes by the timeouts below (280 s, each step killed 15 s past its
# own). Each step's output goes into OUT_FILE as it ends, so a step that times out still leaves the
# ones before it.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check.txt}"
: > "$out"
say() { echo "$*" | tee -a "$out"; }
step() {
    local limit="$1" title="$2"
    shift 2
    say ""
    say "== $title: $*"
    local t0=$SECONDS
    # TERM at the limit (a run stops at its next safe point), KILL 15 s later.
    timeout -k 15 "$limit" "$@" 2>&1 | tail -n 40 | tee -a "$out"
    local rc=${PIPESTATUS[0]}
    say "-- exit $rc after $((SECONDS - t0)) s (limit $limit s)"
}

say "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs) ($(nproc) cores)"
command -v nvidia-smi >/dev/null && say "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"

t0=$SECONDS
cargo build --release 2>&1 | tail -n 3 | tee -a "$out"
say "build: $((SECONDS - t0)) s"
bin="${CARGO_TARGET_DIR:-target}/release/sophon-workbench"
[[ -x "$bin" ]] || { say "no binary at $bin"; exit 1; }

runs="$(mktemp -d)"
step 15 "adapter" "$bin" backends
step 75 "bench-small on wgpu" "$bin" bench --backend wgpu --iters 20
step 45 "bench-small on flex" "$bin" bench --backend flex --iters 20
step 45 "the quick preset on wgpu" "$bin" run presets/quick.toml --backend wgpu --out "$runs/quick"
step 100 "the default preset, 200 outer iterations, on wgpu" "$bin" run presets/default.toml \
    --backend wgpu --out "$runs/default-200" \
    --set sophon.outer_iterations=200 --set pretrain.epochs=3 \
    --set evaluation.strategies.0.epochs=2 --set evaluation.best_effort.epochs=2 \
    --set 'evaluation.best_effort.rungs=[1]'
# Seconds per phase, from each run's summary.json (pre-training, SOPHON, the whole run).
for run in quick default-200; do
    summary="$runs/$run/summary.json"
    [[ -f "$summary" ]] || continue
    say "$run: $(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("pre-training %.1f s, SOPHON %.1f s (%d iterations), whole run %.1f s, status %s" % (s.get("pretrain",{}).get("seconds",0), s.get("sophon",{}).get("seconds",0), s.get("sophon",{}).get("iterations",0), s["seconds"], s["status"]))' "$summary" 2>/dev/null || echo "summary unreadable")"
done
say ""
say "wrote $out"
