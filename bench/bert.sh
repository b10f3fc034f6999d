#!/usr/bin/env bash
# Compares labrun's BERT masked-LM training step with PyTorch's on the same shapes and thread
# count: `lab_bench_step experiments/bert_mlm.ini task.mask_count=fixed` (4 layers, 256 wide,
# 4 heads, T = 128, batch 32, WikiText-2 batches) against bench/torch_bert_step.py, which trains
# transformers' BertForMaskedLM on random batches with the same number of masked positions, once
# as transformers computes it (logits over all B * T positions) and once with the prediction head
# on the masked rows only (what labrun's task/mlm does). Prints one table
# (ratio = labrun tokens/s / PyTorch tokens/s; above 1: labrun is faster).
#
# Usage: bench/bert.sh [--steps 5] [--warmup 3] [--threads 2] [--build-dir build] [--python PY]
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
steps=5; warmup=3; threads=2; build_dir="build"; python_bin="${PYTHON:-}"
die() { echo "bert.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --steps) steps=${2:?--steps needs a value}; shift 2 ;;
    --warmup) warmup=${2:?--warmup needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --build-dir) build_dir=${2:?--build-dir needs a value}; shift 2 ;;
    --python) python_bin=${2:?--python needs a value}; shift 2 ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1'; see --help" ;;
  esac
done
# shellcheck source=bench/common.sh
source "$repo_root/bench/common.sh"
python_bin=$(bench_python "$repo_root" "$python_bin")
bench="$repo_root/$build_dir/bin/lab_bench_step"
[[ -x "$bench" ]] || die "$bench is missing; build it: cmake --build $build_dir --target lab_bench_step"
"$python_bin" -c "import torch, transformers" 2>/dev/null || die "$python_bin lacks torch or transformers; run tools/setup.sh --bench"
[[ -f "$repo_root/data/wikitext-2/valid.txt" ]] || die "data/wikitext-2 is missing; run tools/get_data.sh"

results=$(mktemp)
trap 'rm -f "$results"' EXIT
cd "$repo_root"
echo "bert.sh: labrun ..." >&2
"$bench" experiments/bert_mlm.ini task.mask_count=fixed --steps "$steps" --warmup "$warmup" --threads "$threads" >> "$results"
echo "bert.sh: pytorch ..." >&2
"$python_bin" bench/torch_bert_step.py --steps "$steps" --warmup "$warmup" --threads "$threads" >> "$results"
"$python_bin" bench/torch_bert_step.py --steps "$steps" --warmup "$warmup" --threads "$threads" --masked-rows-only >> "$results"
"$python_bin" - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
lab = rows[0]
print(f"BERT MLM training step, {lab['batch']} x {lab['seq_len']} tokens, {lab['threads']} threads; "
      f"torch {rows[1]['torch']}, transformers {rows[1]['transformers']} (attention: {rows[1]['attn_implementation']})")
print(f"{'implementation':<44} {'ms/step':>9} {'tok/s':>9} {'labrun speed-up':>16}")
names = {"labrun-onednn": "labrun (task/mlm, masked rows only)",
         "pytorch-eager": "PyTorch eager, BertForMaskedLM",
         "pytorch-eager-masked-rows": "PyTorch eager, head on masked rows only"}
for r in rows:
    print(f"{names.get(r['impl'], r['impl']):<44} {r['ms_per_step']:>9.1f} {r['tokens_per_s']:>9.0f} "
          f"{lab['tokens_per_s'] / r['tokens_per_s']:>16.2f}")
print(f"labrun steady state: {lab['allocs_per_step']:g} system allocations per step, "
      f"{lab['primitives_built']} primitives built during the timed steps")
PY
