#!/usr/bin/env bash
# One prepared check for a machine with a GPU: name the CPU and the adapter, time bench-small on
# wgpu (with the fused convolution block and, for the A/B, without) and on flex, run the quick preset and a 200-iteration default run on wgpu, profile a few
# wgpu iterations with CubeCL's profiler, and, where the CPU has AVX-512, the CPU A/B of the issue
# (flex with and without gemm's AVX-512 kernels against PyTorch eager, two cores, interleaved).
# Every figure goes to one file. Usage, from the repository root:
#   bash benches/gpu-check.sh [OUT_FILE]        (default: gpu-check.txt)
# Environment:
#   SOPHON_BIN            a built binary to use instead of building (a machine without crates.io)
#   SOPHON_BIN_NOAVX512   a `--no-default-features` build of the same commit, for the A/B
#   PROFILE_LOG           where CubeCL's profile of the wgpu iterations goes (default: beside OUT_FILE)
# Building is the slow part (about 30 min from nothing on 2 cores); everything after it is bounded
# by the step limits below (about 8 minutes in all, each step killed 15 s past its own). Each
# step's output goes into OUT_FILE as it ends, so a step that times out still leaves the ones
# before it.
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
say "CPU features: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512vl|avx512_bf16|amx_tile)$' | xargs)"
command -v nvidia-smi >/dev/null && say "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
# A driver that ships its Vulkan ICD outside the loader's search path (a container's mounted driver).
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -z "${VK_DRIVER_FILES:-}" && -f "$icd" ]] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES="$icd"
    say "VK_DRIVER_FILES=$icd"
fi

if [[ -n "${SOPHON_BIN:-}" ]]; then
    bin="$SOPHON_BIN"
    say "binary: $bin (given, not built here)"
else
    t0=$SECONDS
    cargo build --release 2>&1 | tail -n 3 | tee -a "$out"
    say "build: $((SECONDS - t0)) s"
    bin="${CARGO_TARGET_DIR:-target}/release/sophon-workbench"
fi
[[ -x "$bin" ]] || { say "no binary at $bin"; exit 1; }

runs="$(mktemp -d)"
step 20 "adapter" "$bin" backends
step 75 "bench-small on wgpu" "$bin" bench --backend wgpu --iters 20
# The same with burn's own convolution, ReLU and pooling instead of the fused CubeCL block: the A/B
# that says whether the block's default (on) is right on this adapter.
step 75 "bench-small on wgpu, burn's operations (SOPHON_WGPU_FUSED=0)" env SOPHON_WGPU_FUSED=0 "$bin" bench --backend wgpu --iters 20
step 30 "bench-small on flex, every core" "$bin" bench --backend flex --iters 20
# The same loop in PyTorch eager on the same GPU, for scale.
if command -v nvidia-smi >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
    step 45 "bench-small in PyTorch eager on the GPU" python3 benches/sophon_torch.py --variant both --device cuda
fi

# The CPU A/B, on two cores as on the machine of the issue: AVX-512 kernels (A), the AVX2/FMA
# kernels of a --no-default-features build (B), PyTorch eager (T); three rounds, the order
# reversed each round (A B T, T B A, A B T).
if grep -qw avx512f /proc/cpuinfo && [[ -x "${SOPHON_BIN_NOAVX512:-}" ]]; then
    export RAYON_NUM_THREADS=2
    two=""
    command -v taskset >/dev/null && two="taskset -c 0,1"
    torch_ok=$(python3 -c 'import torch' >/dev/null 2>&1 && echo yes)
    for round in 1 2 3; do
        order="A B T"
        [[ $round == 2 ]] && order="T B A"
        for who in $order; do
            case $who in
                A) step 40 "round $round, flex with AVX-512 kernels, 2 cores" $two "$bin" bench --backend flex --iters 20 ;;
                B) step 40 "round $round, flex without (--no-default-features), 2 cores" $two "$SOPHON_BIN_NOAVX512" bench --backend flex --iters 20 ;;
                T) [[ -n "$torch_ok" ]] && step 40 "round $round, PyTorch eager, 2 threads" $two python3 benches/sophon_torch.py --variant reference --threads 2 ;;
            esac
        done
    done
    unset RAYON_NUM_THREADS
else
    say ""
    say "== no CPU A/B: $(grep -qw avx512f /proc/cpuinfo && echo 'SOPHON_BIN_NOAVX512 not given' || echo 'this CPU has no AVX-512F')"
fi

step 45 "the quick preset on wgpu" "$bin" run presets/quick.toml --backend wgpu --out "$runs/quick"
# Again, with the kernels the first run tuned now in CubeCL's cache: what a user's second run costs.
step 45 "the quick preset on wgpu, second run" "$bin" run presets/quick.toml --backend wgpu --out "$runs/quick-again"
step 100 "the default preset, 200 outer iterations, on wgpu" "$bin" run presets/default.toml \
    --backend wgpu --out "$runs/default-200" \
    --set sophon.outer_iterations=200 --set pretrain.epochs=3 \
    --set evaluation.strategies.0.epochs=2 --set evaluation.best_effort.epochs=2 \
    --set 'evaluation.best_effort.rungs=[1]'
# Seconds per phase, from each run's summary.json (pre-training, SOPHON, the whole run); for a run
# stopped by its limit, how far it got (the last line of metrics.jsonl).
for run in quick quick-again default-200; do
    [[ -f "$runs/$run/summary.json" ]] || continue
    say "$run: $(python3 - "$runs/$run" <<'PY' 2>&1
import json, sys
d = sys.argv[1]
s = json.load(open(d + "/summary.json"))
parts = [f"status {s['status']}, whole run {s['seconds']:.1f} s"]
if "pretrain" in s:
    parts.append(f"pre-training {s['pretrain']['seconds']:.1f} s")
if "sophon" in s:
    parts.append(f"SOPHON {s['sophon']['seconds']:.1f} s ({s['sophon']['iterations']} iterations)")
lines = open(d + "/metrics.jsonl").read().splitlines()
if lines:
    last = json.loads(lines[-1])
    parts.append(f"last metric {last.get('series')} at step {last.get('step')}")
print("; ".join(parts))
PY
)"
done

# CubeCL's profiler on a real adapter: every kernel launch of a few outer iterations with its
# device time (lavapipe resolves none). The log itself goes to PROFILE_LOG.
profile="${PROFILE_LOG:-$(dirname "$out")/wgpu-profile.log}"
CUBECL_DEBUG_OPTION=profile CUBECL_DEBUG_LOG="$profile" \
    step 60 "CubeCL profile of bench-small on wgpu (log: $profile)" "$bin" bench --backend wgpu --k 10 --iters 2
say ""
say "wrote $out"
