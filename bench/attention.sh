#!/usr/bin/env bash
# Compares labrun's attention cores with PyTorch's on the same shapes and thread count: runs
# build/bin/lab_bench_attention and bench/torch_attention.py one after the other and prints one
# table of forward + backward times (ratio = PyTorch ms / labrun ms, above 1: labrun is faster).
# Usage: bench/attention.sh [--seq-lens 512,1024,2048,4096] [--threads 2] [--build-dir build]
#                           [--python PY] [--non-causal]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seq_lens="512,1024,2048,4096"; threads=2; build_dir="build"; python_bin="${PYTHON:-}"; extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seq-lens) seq_lens=${2:?--seq-lens needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --build-dir) build_dir=${2:?--build-dir needs a value}; shift 2 ;;
    --python) python_bin=${2:?--python needs a value}; shift 2 ;;
    --non-causal) extra+=(--non-causal); shift ;;
    -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "attention.sh: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done
# shellcheck source=bench/common.sh
source "$repo_root/bench/common.sh"
python_bin=$(bench_python "$repo_root" "$python_bin")
bench="$repo_root/$build_dir/bin/lab_bench_attention"
[[ -x "$bench" ]] || { echo "attention.sh: $bench is missing; build it: cmake --build $build_dir --target lab_bench_attention" >&2; exit 1; }
"$python_bin" -c "import torch" 2>/dev/null || { echo "attention.sh: $python_bin has no torch; run tools/setup.sh --bench" >&2; exit 1; }

results=$(mktemp)
trap 'rm -f "$results"' EXIT
"$bench" --seq-lens "$seq_lens" --threads "$threads" "${extra[@]}" >> "$results"
"$python_bin" "$repo_root/bench/torch_attention.py" --seq-lens "$seq_lens" --threads "$threads" "${extra[@]}" >> "$results"
"$python_bin" - "$results" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[(r["impl"], r["seq_len"])] = r
lengths = sorted({t for _, t in rows})
print(f"attention forward + backward, B=1 H=4 D=64, {next(iter(rows.values()))['threads']} threads (ms; peak MB)")
print(f"{'T':>6} {'labrun fused':>16} {'torch sdpa':>16} {'sdpa/fused':>10} {'labrun composite':>18} {'torch composite':>17} {'ratio':>7}")
for t in lengths:
    f, s = rows[("labrun-fused", t)], rows[("torch-sdpa", t)]
    c, tc = rows[("labrun-composite", t)], rows[("torch-composite", t)]
    print(f"{t:>6} {f['ms']:>9.1f} ({f['peak_mb']:>4.0f}) {s['ms']:>9.1f} ({s['peak_mb']:>4.0f}) {s['ms'] / f['ms']:>10.2f}"
          f" {c['ms']:>11.1f} ({c['peak_mb']:>4.0f}) {tc['ms']:>10.1f} ({tc['peak_mb']:>4.0f}) {tc['ms'] / c['ms']:>7.2f}")
PY
