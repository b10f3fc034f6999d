#!/usr/bin/env bash
# Compares labrun's text generation with Hugging Face transformers' generate on PyTorch (CPU):
# batch 1, a 16-token prompt, 256 new tokens, greedy, KV cache on both sides, the same thread
# count. For each configuration build/bin/lab_bench_generate builds a GPT (GPT-2 initialisation,
# seed 1), times it and saves its weights; bench/hf_generate.py loads those weights into
# transformers' GPT2LMHeadModel and times generate on them. Prints one table
# (ratio = labrun tokens/s / transformers tokens/s; above 1: labrun is faster) and whether the two
# produced the same tokens.
#
# Usage: bench/generate.sh [--configs "small wikitext"] [--new-tokens 256] [--repeats 3]
#                          [--threads 2] [--no-cache-too] [--build-dir build] [--python PY]
#
# Configurations (name | layers | heads | hidden | vocab | context):
#   small      6 | 6 | 384 | 50257 | 512   nanoGPT shakespeare_char's width with GPT-2's vocabulary
#   wikitext   4 | 4 | 128 | 50257 | 512   experiments/gpt_wikitext.ini's model
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
declare -A CONFIGS=(
  [small]="--layers 6 --heads 6 --hidden 384 --vocab 50257 --context 512"
  [wikitext]="--layers 4 --heads 4 --hidden 128 --vocab 50257 --context 512"
)
configs="small wikitext"; new_tokens=256; repeats=3; threads=2; build_dir="build"; python_bin="${PYTHON:-}"
no_cache=()
die() { echo "generate.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --configs) configs=${2:?--configs needs a value}; shift 2 ;;
    --new-tokens) new_tokens=${2:?--new-tokens needs a value}; shift 2 ;;
    --repeats) repeats=${2:?--repeats needs a value}; shift 2 ;;
    --threads) threads=${2:?--threads needs a value}; shift 2 ;;
    --no-cache-too) no_cache=(--no-cache-too); shift ;;
    --build-dir) build_dir=${2:?--build-dir needs a value}; shift 2 ;;
    --python) python_bin=${2:?--python needs a value}; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1'; see --help" ;;
  esac
done
# shellcheck source=bench/common.sh
source "$repo_root/bench/common.sh"
python_bin=$(bench_python "$repo_root" "$python_bin")
bench="$repo_root/$build_dir/bin/lab_bench_generate"
[[ -x "$bench" ]] || die "$bench is missing; build it: cmake --build $build_dir --target lab_bench_generate"
"$python_bin" -c "import torch, transformers, safetensors" 2>/dev/null ||
  die "$python_bin lacks torch, transformers or safetensors; run tools/setup.sh --bench"
for name in $configs; do
  [[ -n "${CONFIGS[$name]:-}" ]] || die "unknown configuration '$name'; known: ${!CONFIGS[*]}"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in $configs; do
  echo "generate.sh: $name: labrun ..." >&2
  # shellcheck disable=SC2086  # the configuration is a list of arguments
  "$bench" ${CONFIGS[$name]} --new-tokens "$new_tokens" --repeats "$repeats" --threads "$threads" \
    "${no_cache[@]}" --save "$work/$name.safetensors" | sed "s/^{/{\"name\":\"$name\",/" >> "$work/results.jsonl"
  echo "generate.sh: $name: transformers ..." >&2
  "$python_bin" "$repo_root/bench/hf_generate.py" --weights "$work/$name.safetensors" --new-tokens "$new_tokens" \
    --repeats "$repeats" --threads "$threads" "${no_cache[@]}" | sed "s/^{/{\"name\":\"$name\",/" >> "$work/results.jsonl"
done
"$python_bin" - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {(r["name"], r["impl"].split("-")[0]): r for r in rows}
names = list(dict.fromkeys(r["name"] for r in rows))
hf = next(r for r in rows if r["impl"].startswith("transformers"))
print(f"batch 1, greedy, {hf['new_tokens']} new tokens after a {hf['prompt_tokens']}-token prompt, "
      f"{hf['threads']} threads; torch {hf['torch']}, transformers {hf['transformers']} "
      f"(attention: {hf['attn_implementation']})")
print("ratio = labrun tokens/s / transformers tokens/s (> 1: labrun is faster); KV cache on both sides")
print(f"{'config':<10} {'L x H x C, V':>20} {'labrun tok/s':>13} {'transformers tok/s':>19} {'ratio':>7} "
      f"{'same tokens':>12}")
for n in names:
    lab, ref = by[(n, "labrun")], by[(n, "transformers")]
    c = lab["config"]
    shape = f"{c['layers']}x{c['heads']}x{c['hidden']}, {c['vocab']}"
    same = sum(a == b for a, b in zip(lab["ids"], ref["ids"]))
    first = next((i for i, (a, b) in enumerate(zip(lab["ids"], ref["ids"])) if a != b), None)
    agree = f"{same}/{len(lab['ids'])}" + ("" if first is None else f" (from {first})")
    print(f"{n:<10} {shape:>20} {lab['tokens_per_s']:>13.1f} {ref['tokens_per_s']:>19.1f} "
          f"{lab['tokens_per_s'] / ref['tokens_per_s']:>7.2f} {agree:>12}")
    if lab["tokens_per_s_no_cache"] and ref["tokens_per_s_no_cache"]:
        print(f"{'  no cache':<10} {'':>20} {lab['tokens_per_s_no_cache']:>13.1f} "
              f"{ref['tokens_per_s_no_cache']:>19.1f} {lab['tokens_per_s_no_cache'] / ref['tokens_per_s_no_cache']:>7.2f}")
PY
