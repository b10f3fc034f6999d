#!/usr/bin/env bash
# Compares labrun's training step with PyTorch's on the same nanoGPT shapes: for each
# configuration it runs build/bin/lab_bench_gpt and bench/torch_gpt_step.py with the same
# arguments and thread count, then prints one table (ratio = labrun tokens/s / PyTorch tokens/s).
# It builds nothing; see bench/README.md.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

# name | layers | heads | hidden | seq_len | batch | default steps | default warm-up steps.
# shakespeare_char is nanoGPT's config/train_shakespeare_char.py; a step there takes seconds on two
# cores, hence few timed steps. baby is its small sibling for quick checks.
readonly CONFIGS=(
  "baby|4|4|128|64|12|20|3"
  "shakespeare_char|6|6|384|256|64|3|1"
)

usage() {
  local names=() entry
  for entry in "${CONFIGS[@]}"; do names+=("${entry%%|*}"); done
  cat <<EOF
Usage: bench/run.sh [options]

Times full training steps (forward, backward, clip, AdamW) of labrun (build/bin/lab_bench_gpt,
oneDNN backend) and of PyTorch (bench/torch_gpt_step.py) on the same GPT shapes and prints a
table. Build first: cmake --build build --target lab_bench_gpt. PyTorch: tools/setup.sh --bench.

Options:
  --configs "A B"   configurations to run (default: "${names[*]}")
  --steps N         timed steps for every configuration (default: per configuration)
  --warmup W        untimed warm-up steps for every configuration (default: per configuration)
  --threads N       threads for both implementations (default: 2)
  --impl WHICH      both (default), labrun or pytorch
  --build-dir DIR   build tree holding bin/lab_bench_gpt (default: build)
  --python PY       interpreter with torch (default: \$PYTHON, else .venv/bin/python3, else python3)
  --torch-args "…"  extra arguments for torch_gpt_step.py, e.g. "--compile" or "--sdpa"
  --out FILE        also append every result as a JSON line to FILE (e.g. results/bench_gpt.jsonl)
  -h, --help        show this help
EOF
}

die() {
  echo "run.sh: error: $*" >&2
  exit 1
}

require_value() {
  [[ $2 -ge 2 && -n "$3" ]] || die "$1 needs a value; hint: see bench/run.sh --help"
}

config_names=""
steps_override=""
warmup_override=""
threads=2
impl=both
build_dir="build"
python_bin="${PYTHON:-}"
torch_args=""
out_file=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --configs) require_value "$1" $# "${2:-}"; config_names=$2; shift 2 ;;
    --steps) require_value "$1" $# "${2:-}"; steps_override=$2; shift 2 ;;
    --warmup) require_value "$1" $# "${2:-}"; warmup_override=$2; shift 2 ;;
    --threads) require_value "$1" $# "${2:-}"; threads=$2; shift 2 ;;
    --impl) require_value "$1" $# "${2:-}"; impl=$2; shift 2 ;;
    --build-dir) require_value "$1" $# "${2:-}"; build_dir=$2; shift 2 ;;
    --python) require_value "$1" $# "${2:-}"; python_bin=$2; shift 2 ;;
    --torch-args) require_value "$1" $# "${2:-}"; torch_args=$2; shift 2 ;;
    --out) require_value "$1" $# "${2:-}"; out_file=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; hint: see bench/run.sh --help" ;;
  esac
done

is_count() { [[ "$1" =~ ^[0-9]+$ ]]; }
[[ -z "$steps_override" ]] || { is_count "$steps_override" && [[ $steps_override -gt 0 ]]; } ||
  die "--steps '$steps_override' is not a positive integer"
[[ -z "$warmup_override" ]] || is_count "$warmup_override" ||
  die "--warmup '$warmup_override' is not a non-negative integer"
{ is_count "$threads" && [[ $threads -gt 0 ]]; } || die "--threads '$threads' is not a positive integer"
case "$impl" in both | labrun | pytorch) ;; *) die "--impl '$impl' must be both, labrun or pytorch" ;; esac

# Relative paths given by the user are relative to where they ran the script; the rest of the
# script runs from the repository root.
[[ "$build_dir" == /* ]] || build_dir="$PWD/$build_dir"
[[ -z "$out_file" || "$out_file" == /* ]] || out_file="$PWD/$out_file"
cd "$repo_root"

# shellcheck source=bench/common.sh
source "$repo_root/bench/common.sh"
python_bin=$(bench_python "$repo_root" "$python_bin")
lab_bench="$build_dir/bin/lab_bench_gpt"
if [[ "$impl" != pytorch ]]; then
  [[ -x "$lab_bench" ]] ||
    die "$lab_bench not found; hint: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target lab_bench_gpt (or --impl pytorch)"
fi
if [[ "$impl" != labrun ]]; then
  "$python_bin" -c "import torch" >/dev/null 2>&1 ||
    die "$python_bin cannot import torch; hint: tools/setup.sh --bench, or --python PY (or --impl labrun)"
fi

selected=()
for name in ${config_names:-$(for entry in "${CONFIGS[@]}"; do printf '%s ' "${entry%%|*}"; done)}; do
  found=""
  for entry in "${CONFIGS[@]}"; do
    [[ "${entry%%|*}" == "$name" ]] && found=$entry
  done
  [[ -n "$found" ]] || die "unknown configuration '$name'; hint: known are: $(printf '%s ' "${CONFIGS[@]%%|*}")"
  selected+=("$found")
done

results_dir=$(mktemp -d)
trap 'rm -rf -- "$results_dir"' EXIT

# Runs one benchmark command; keeps the last JSON line of its stdout in OUTPUT_FILE.
# stderr passes through so that compile warnings and errors stay visible.
run_one() {
  local output_file=$1
  shift
  local stdout_file="$output_file.stdout"
  echo "run.sh: $*" >&2
  local status=0
  "$@" >"$stdout_file" || status=$?
  if [[ $status -ne 0 ]]; then
    echo "run.sh: the command above failed (exit status $status)" >&2
    return 0
  fi
  grep '^{' "$stdout_file" | tail -n 1 >"$output_file" || true
  [[ -s "$output_file" ]] || echo "run.sh: the command above printed no JSON line" >&2
}

# The fp32 matmul peak of the oneDNN backend on this machine, for model FLOP utilisation (MFU).
peak_bench="$build_dir/bin/lab_bench_matmul"
if [[ "$impl" != pytorch && -x "$peak_bench" ]]; then
  run_one "$results_dir/peak.json" "$peak_bench" --threads "$threads" --no-bf16
elif [[ "$impl" != pytorch ]]; then
  echo "run.sh: $peak_bench is missing, so no MFU; build it: cmake --build build --target lab_bench_matmul" >&2
fi

for entry in "${selected[@]}"; do
  IFS='|' read -r name layers heads hidden seq_len batch steps warmup <<<"$entry"
  steps=${steps_override:-$steps}
  warmup=${warmup_override:-$warmup}
  shape_args=(--layers "$layers" --heads "$heads" --hidden "$hidden" --seq-len "$seq_len" --batch "$batch"
    --steps "$steps" --warmup "$warmup" --threads "$threads")
  if [[ "$impl" != pytorch ]]; then
    run_one "$results_dir/$name.labrun.json" "$lab_bench" "${shape_args[@]}"
  fi
  if [[ "$impl" != labrun ]]; then
    # torch_args is a list of flags on purpose: split on spaces.
    # shellcheck disable=SC2086
    run_one "$results_dir/$name.pytorch.json" "$python_bin" bench/torch_gpt_step.py "${shape_args[@]}" $torch_args
  fi
done

python3 - "$results_dir" "$impl" "$out_file" "${selected[@]%%|*}" <<'PY'
import json, os, sys

results_dir, impl, out_file, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
wanted = [side for side in ("labrun", "pytorch") if impl in (side, "both")]

def load(name, side):
    path = os.path.join(results_dir, f"{name}.{side}.json")
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as handle:
        text = handle.read().strip()
    try:
        result = json.loads(text)
    except json.JSONDecodeError as error:
        print(f"run.sh: {side} output for {name} is not JSON ({error}): {text[:200]}", file=sys.stderr)
        return None
    if not isinstance(result, dict) or "ms_per_step" not in result or "tokens_per_s" not in result:
        print(f"run.sh: {side} output for {name} lacks ms_per_step/tokens_per_s: {text[:200]}", file=sys.stderr)
        return None
    return result

def cell(result, key):
    return f"{result[key]:.1f}" if result is not None else "failed"

failed = False
header = f"{'config':<18}{'labrun ms/step':>16}{'labrun tok/s':>14}{'pytorch ms/step':>17}{'pytorch tok/s':>15}{'ratio':>8}"
rows, records = [], []
for name in names:
    results = {side: load(name, side) if side in wanted else None for side in ("labrun", "pytorch")}
    failed |= any(results[side] is None for side in wanted)
    labrun, pytorch = results["labrun"], results["pytorch"]
    if labrun is not None and pytorch is not None:
        # Both sides must have timed the same shapes; a mismatch makes the ratio meaningless.
        labrun_config = labrun.get("config") if isinstance(labrun.get("config"), dict) else {}
        pytorch_config = pytorch.get("config") if isinstance(pytorch.get("config"), dict) else {}
        for key in ("layers", "heads", "hidden", "seq_len", "batch", "vocab", "bias"):
            left, right = labrun_config.get(key), pytorch_config.get(key)
            if left is not None and right is not None and left != right:
                print(f"run.sh: warning: {name}: labrun {key}={left} but pytorch {key}={right}", file=sys.stderr)
    ratio = f"{labrun['tokens_per_s'] / pytorch['tokens_per_s']:.2f}" if labrun and pytorch else "-"
    cells = []
    for side in ("labrun", "pytorch"):
        cells += [cell(results[side], "ms_per_step"), cell(results[side], "tokens_per_s")] if side in wanted else ["-", "-"]
    rows.append(f"{name:<18}{cells[0]:>16}{cells[1]:>14}{cells[2]:>17}{cells[3]:>15}{ratio:>8}")
    records += [dict(result, bench_config=name) for result in (labrun, pytorch) if result is not None]

torch_versions = sorted({record["torch"] for record in records if "torch" in record})
threads = sorted({record["threads"] for record in records if "threads" in record})
print()
print(f"threads: {', '.join(map(str, threads)) or '-'}   torch: {', '.join(torch_versions) or '-'}   "
      f"ratio = labrun tokens/s / pytorch tokens/s (> 1: labrun is faster)")
print(header)
print("-" * len(header))
for row in rows:
    print(row)
peak_path = os.path.join(results_dir, "peak.json")
if os.path.exists(peak_path) and os.path.getsize(peak_path) > 0:
    peak = json.load(open(peak_path))
    print(f"\nMFU: model FLOPs (nanoGPT's 6N + 12LCT per token) per second over the oneDNN fp32 matmul peak "
          f"measured now, {peak['gflops']:.1f} GFLOP/s ({peak['n']}^3)")
    for name in names:
        labrun, pytorch = load(name, "labrun"), load(name, "pytorch") if "pytorch" in wanted else None
        if labrun is None or "model_flops_per_step" not in labrun:
            continue
        flops = labrun["model_flops_per_step"]
        line = f"{name:<18} labrun {flops / (labrun['ms_per_step'] / 1000) / 1e9:7.1f} GFLOP/s = " \
               f"{100 * flops / (labrun['ms_per_step'] / 1000) / 1e9 / peak['gflops']:5.1f}% MFU"
        if pytorch is not None:
            line += f"   pytorch {flops / (pytorch['ms_per_step'] / 1000) / 1e9:7.1f} GFLOP/s = " \
                    f"{100 * flops / (pytorch['ms_per_step'] / 1000) / 1e9 / peak['gflops']:5.1f}%"
        print(line)
if out_file:
    with open(out_file, "a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    print(f"\nrun.sh: appended {len(records)} results to {out_file}")
sys.exit(1 if failed else 0)
PY
