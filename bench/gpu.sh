#!/usr/bin/env bash
# Every GPU check in one command, for a machine with an NVIDIA GPU (written for an H100/H200):
#   1. configures and builds BUILD_DIR with the cuda backend (cmake -DLAB_WITH_CUDA=ON) if needed;
#   2. runs the CUDA tests: ctest -R cuda (kernel, attention and model parity with the host backend,
#      steady state, the shakespeare_char curve against onednn);
#   3. times GPT-2 124M training (12 layers, 12 heads, 768 wide, T = 1024, vocab 50257, bf16) and
#      prints tokens/s and MFU next to llm.c's figure;
#   4. times bf16 attention forward + backward at S = 4096, d = 64 and 128, causal and not, next to
#      cuDNN's published figure.
# Fails at once, saying why, where there is no GPU (no nvidia-smi, or the backend finds no device).
# Usage: bench/gpu.sh [--build-dir build] [--batch 16] [--steps 10] [--skip-tests] [--skip-bench] [-j N]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="build"; batch=16; steps=10; run_tests=1; run_bench=1; jobs=$(nproc 2>/dev/null || echo 4)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir=${2:?--build-dir needs a value}; shift 2 ;;
    --batch) batch=${2:?--batch needs a value}; shift 2 ;;
    --steps) steps=${2:?--steps needs a value}; shift 2 ;;
    --skip-tests) run_tests=0; shift ;;
    --skip-bench) run_bench=0; shift ;;
    -j) jobs=${2:?-j needs a value}; shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu.sh: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done
cd "$repo_root"
[[ "$build_dir" = /* ]] || build_dir="$repo_root/$build_dir"

# ---- 0. is there a GPU at all? ----
if ! command -v nvidia-smi > /dev/null 2>&1; then
  echo "gpu.sh: no NVIDIA GPU here: nvidia-smi is not installed (no driver). Run this on a GPU machine." >&2
  exit 1
fi
if ! gpu_names=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1); then
  echo "gpu.sh: no usable NVIDIA GPU here: nvidia-smi says: $gpu_names" >&2
  exit 1
fi
echo "== GPU: $gpu_names"

# ---- 1. build ----
if [[ ! -f "$build_dir/CMakeCache.txt" ]] || ! grep -q '^LAB_WITH_CUDA:STRING=ON' "$build_dir/CMakeCache.txt"; then
  echo "== configuring $build_dir with the cuda backend"
  cmake -S "$repo_root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLAB_WITH_CUDA=ON
fi
echo "== building (-j $jobs)"
cmake --build "$build_dir" -j "$jobs" --target lab_plugins labrun lab_tests_plugins lab_tests_e2e lab_bench_gpt \
  lab_bench_attention
[[ -f "$build_dir/plugins/backend_cuda.so" ]] || {
  echo "gpu.sh: $build_dir/plugins/backend_cuda.so was not built; see the cmake output above" >&2; exit 1; }

# The backend's own verdict (driver too old for the runtime, device busy or hidden, ...): a tiny
# attention call on backend cuda.
if ! probe=$("$build_dir/bin/lab_bench_attention" --backend cuda --seq-len 16 --batch 1 --heads 1 --head-dim 64 \
               --reps 1 --impls fused 2>&1); then
  echo "gpu.sh: the cuda backend cannot use this machine's GPU: $probe" >&2
  exit 1
fi

status=0
# ---- 2. tests ----
if [[ $run_tests = 1 ]]; then
  echo "== ctest -R cuda"
  if ! ctest --test-dir "$build_dir" -R cuda --output-on-failure; then
    echo "gpu.sh: some CUDA tests FAILED (see above); the benchmarks run anyway" >&2
    status=1
  fi
fi

# ---- 3 and 4. benchmarks ----
field() {  # field JSON_LINE KEY [SCALE]: one value of a flat JSON line, numbers times SCALE to 1 decimal
  python3 -c '
import json, sys
v = json.loads(sys.argv[1]).get(sys.argv[2], "?")
print(f"{v * float(sys.argv[3]):.1f}" if isinstance(v, (int, float)) else v)' "$1" "$2" "${3:-1}" 2> /dev/null || echo "?"
}
if [[ $run_bench = 1 ]]; then
  echo "== GPT-2 124M training step: 12 layers, 12 heads, 768 wide, T = 1024, vocab 50257, batch $batch, bf16"
  gpt_json=$("$build_dir/bin/lab_bench_gpt" --backend cuda --precision bf16 --layers 12 --heads 12 --hidden 768 \
               --seq-len 1024 --vocab 50257 --batch "$batch" --bias true --activation gelu_tanh --steps "$steps" --warmup 3) || {
    echo "gpu.sh: lab_bench_gpt failed" >&2; status=1; gpt_json=""; }
  if [[ -n "$gpt_json" ]]; then
    echo "$gpt_json"
    printf '  labrun:  %s tokens/s, %s ms/step, MFU %s%% of %s TFLOP/s (%s)\n' \
      "$(field "$gpt_json" tokens_per_s)" "$(field "$gpt_json" ms_per_step)" "$(field "$gpt_json" mfu 100)" \
      "$(field "$gpt_json" peak_tflops)" "$(field "$gpt_json" peak_source)"
    echo "  anchor:  llm.c: ~471K tokens/s per H100 (GPT-2 124M, bf16, cuDNN attention)"
  fi

  echo "== attention forward + backward, bf16, S = 4096 (FlashAttention's FLOP count: 4BHTSD forward, 2.5x backward, half when causal)"
  for head_dim in 64 128; do
    heads=$((2048 / head_dim))  # 2048 wide, batch 4: FlashAttention's benchmark shapes
    for causal in "" "--non-causal"; do
      line=$("$build_dir/bin/lab_bench_attention" --backend cuda --precision bf16 --impls fused --seq-len 4096 \
               --batch 4 --heads "$heads" --head-dim "$head_dim" --reps 5 $causal) || {
        echo "gpu.sh: lab_bench_attention failed (d=$head_dim $causal)" >&2; status=1; continue; }
      printf '  d=%-3s %-10s %8s TFLOP/s fwd+bwd (%s ms), %s TFLOP/s fwd\n' "$head_dim" \
        "$([[ -n $causal ]] && echo "not causal" || echo causal)" "$(field "$line" tflops)" "$(field "$line" ms)" \
        "$(field "$line" forward_tflops)"
    done
  done
  echo "  anchor:  cuDNN bf16 attention ~550 TFLOP/s fwd+bwd at d=128, S=4096 on Hopper"
fi
exit $status
