#!/usr/bin/env bash
# Compares labrun's training step with its strongest PyTorch peer on the same nanoGPT shapes, the
# same machine and the same thread count, in one invocation: for each configuration and precision
# (f32, bf16) it runs build/bin/lab_bench_gpt, bench/torch_gpt_step.py in eager mode and under
# torch.compile (SDPA attention, bf16 by autocast), measures both sides' matmul peaks
# (lab_bench_matmul, bench/torch_matmul_peak.py), and prints one report (bench/peer_report.py):
# the machine, the peaks, and per row the labrun time, the peer (the faster PyTorch run), their
# ratio and both sides' MFU. It builds nothing; see bench/README.md.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

# name | layers | heads | hidden | seq_len | batch | default steps | default warm-up steps.
# shakespeare_char is nanoGPT's config/train_shakespeare_char.py; a step there takes seconds on two
# cores, hence few timed steps. baby is its small sibling for quick checks.
readonly CONFIGS=(
  "baby|4|4|128|64|12|20|3"
  "shakespeare_char|6|6|384|256|64|3|2"
)

usage() {
  local names=() entry name layers heads hidden seq_len batch steps warmup
  for entry in "${CONFIGS[@]}"; do names+=("${entry%%|*}"); done
  cat <<EOF
Usage: bench/run.sh [options]

Times full training steps (forward, cross-entropy, backward, clip, AdamW) of labrun
(build/bin/lab_bench_gpt, oneDNN backend) and of PyTorch (bench/torch_gpt_step.py) on the same GPT
shapes and thread count, for each configuration and each precision:
  labrun    lab_bench_gpt --precision P (bf16: bf16 matmul inputs, f32 accumulation and weights)
  eager     torch_gpt_step.py --precision P: F.scaled_dot_product_attention; bf16 = forward and
            loss under torch.autocast(dtype=torch.bfloat16), as nanoGPT's train.py
  compile   the same under torch.compile (the untimed warm-up steps compile it)
The peer of a row is the faster of eager and compile; if compiling fails the report says why and
eager is the peer. First it measures the matmul peak of both sides in both precisions
(build/bin/lab_bench_matmul, bench/torch_matmul_peak.py: the same square sizes and threads) and
notes the CPU, the instruction set oneDNN dispatches to (ONEDNN_VERBOSE=1) and the versions.
ratio = peer ms/step / labrun ms/step (> 1: labrun is faster). MFU = model FLOPs per step
(nanoGPT's 6N + 12LCT per token, lab_bench_gpt's model_flops_per_step) / time / the matmul peak of
that side at that precision. Exit status 1 when a labrun or eager run failed, else 0.
Build first: cmake --build build --target lab_bench_gpt lab_bench_matmul. PyTorch: tools/setup.sh --bench.

Options:
  --configs "A B"      configurations to run (default: "${names[*]}")
  --precisions "P Q"   f32 and/or bf16 (default: "f32 bf16")
  --steps N            timed steps for every configuration (default: per configuration)
  --warmup W           untimed warm-up steps for every configuration (default: per configuration;
                       the compile runs take at least 1, which compiles)
  --threads N          threads for both implementations and both peaks (default: 2)
  --no-compile         skip the torch.compile runs (a compilation takes a minute or more): eager is the peer
  --impl WHICH         both (default), labrun or pytorch
  --build-dir DIR      build tree holding bin/lab_bench_gpt and bin/lab_bench_matmul (default: build)
  --python PY          interpreter with torch (default: \$PYTHON, else .venv/bin/python3, else python3)
  --torch-args "…"     extra arguments for every torch_gpt_step.py run, e.g. "--attention explicit"
  --peak-sizes "A,B"   square sizes of both matmul peaks (default: 1024,2048,3072; the best counts)
  --out FILE           also append every result, the peaks and the machine as JSON lines to FILE
  -h, --help           show this help

Configurations (layers / heads / width / context / batch; timed steps / warm-up steps):
$(for entry in "${CONFIGS[@]}"; do
    IFS='|' read -r name layers heads hidden seq_len batch steps warmup <<<"$entry"
    printf '  %-18s %s / %s / %s / %s / %s; %s / %s\n' "$name" "$layers" "$heads" "$hidden" "$seq_len" "$batch" "$steps" "$warmup"
  done)
EOF
}

# shellcheck source=bench/common.sh
source "$repo_root/bench/common.sh"

config_names=""
precisions="f32 bf16"
steps_override=""
warmup_override=""
threads=2
compile=true
impl=both
build_dir="build"
python_bin="${PYTHON:-}"
torch_args=""
peak_sizes="1024,2048,3072"
out_file=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --configs) bench_require_value "$1" $# "${2:-}"; config_names=$2; shift 2 ;;
    --precisions) bench_require_value "$1" $# "${2:-}"; precisions=$2; shift 2 ;;
    --steps) bench_require_value "$1" $# "${2:-}"; steps_override=$2; shift 2 ;;
    --warmup) bench_require_value "$1" $# "${2:-}"; warmup_override=$2; shift 2 ;;
    --threads) bench_require_value "$1" $# "${2:-}"; threads=$2; shift 2 ;;
    --no-compile) compile=false; shift ;;
    --impl) bench_require_value "$1" $# "${2:-}"; impl=$2; shift 2 ;;
    --build-dir) bench_require_value "$1" $# "${2:-}"; build_dir=$2; shift 2 ;;
    --python) bench_require_value "$1" $# "${2:-}"; python_bin=$2; shift 2 ;;
    --torch-args) bench_require_value "$1" $# "${2:-}"; torch_args=$2; shift 2 ;;
    --peak-sizes) bench_require_value "$1" $# "${2:-}"; peak_sizes=$2; shift 2 ;;
    --out) bench_require_value "$1" $# "${2:-}"; out_file=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown argument '$1'; hint: see bench/run.sh --help" ;;
  esac
done

[[ -z "$steps_override" ]] || { bench_is_count "$steps_override" && [[ $steps_override -gt 0 ]]; } ||
  bench_die "--steps '$steps_override' is not a positive integer"
[[ -z "$warmup_override" ]] || bench_is_count "$warmup_override" ||
  bench_die "--warmup '$warmup_override' is not a non-negative integer"
problem=$(bench_check_options "$threads" "$impl" "$precisions" "$peak_sizes") || bench_die "$problem"
read -r -a precision_list <<<"$precisions"

# Relative paths given by the user are relative to where they ran the script; the rest of the
# script runs from the repository root.
[[ "$build_dir" == /* ]] || build_dir="$PWD/$build_dir"
[[ -z "$out_file" || "$out_file" == /* ]] || out_file="$PWD/$out_file"
cd "$repo_root"

python_bin=$(bench_python "$repo_root" "$python_bin")
lab_bench="$build_dir/bin/lab_bench_gpt"
peak_bench="$build_dir/bin/lab_bench_matmul"
if [[ "$impl" != pytorch ]]; then
  for program in "$lab_bench" "$peak_bench"; do
    [[ -x "$program" ]] ||
      bench_die "$program not found; hint: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target lab_bench_gpt lab_bench_matmul (or --build-dir DIR, or --impl pytorch)"
  done
fi
if [[ "$impl" != labrun ]]; then
  "$python_bin" -c "import torch" >/dev/null 2>&1 ||
    bench_die "$python_bin cannot import torch; hint: tools/setup.sh --bench, or --python PY (or --impl labrun)"
fi

selected=()
for name in ${config_names:-$(for entry in "${CONFIGS[@]}"; do printf '%s ' "${entry%%|*}"; done)}; do
  found=""
  for entry in "${CONFIGS[@]}"; do
    [[ "${entry%%|*}" == "$name" ]] && found=$entry
  done
  [[ -n "$found" ]] || bench_die "unknown configuration '$name'; hint: known are: $(printf '%s ' "${CONFIGS[@]%%|*}")"
  selected+=("$found")
done

results_dir=$(mktemp -d)
trap 'rm -rf -- "$results_dir"' EXIT

# The machine and both peaks first: the report divides by the peaks, and a peak measured while the
# steps run would be measured against itself.
lab_side="" torch_side=""
[[ "$impl" == pytorch ]] || lab_side=$peak_bench
[[ "$impl" == labrun ]] || torch_side=$python_bin
bench_describe_machine "$results_dir/machine.txt" "$threads" "$lab_side" "$torch_side"
bench_matmul_peaks "$results_dir" "$threads" "$peak_sizes" "$lab_side" "$torch_side"

peers=(eager)
[[ "$compile" == false ]] || peers+=(compile)
legend=()
for entry in "${selected[@]}"; do
  IFS='|' read -r name layers heads hidden seq_len batch steps warmup <<<"$entry"
  steps=${steps_override:-$steps}
  warmup=${warmup_override:-$warmup}
  legend+=(--legend "$name: $layers layers, $heads heads, $hidden wide, context $seq_len, batch $batch, vocabulary 65; timed steps $steps, warm-up $warmup")
  shape_args=(--layers "$layers" --heads "$heads" --hidden "$hidden" --seq-len "$seq_len" --batch "$batch"
    --steps "$steps" --warmup "$warmup" --threads "$threads")
  for precision in "${precision_list[@]}"; do
    if [[ "$impl" != pytorch ]]; then
      bench_run_one "$results_dir/$name.$precision.labrun.json" "$lab_bench" "${shape_args[@]}" --precision "$precision"
    fi
    [[ "$impl" != labrun ]] || continue
    for role in "${peers[@]}"; do
      role_args=(--precision "$precision")
      [[ "$role" == eager ]] || role_args+=(--compile)
      # torch_args is a list of flags on purpose: split on spaces.
      # shellcheck disable=SC2086
      bench_run_one "$results_dir/$name.$precision.$role.json" "$python_bin" bench/torch_gpt_step.py \
        "${shape_args[@]}" "${role_args[@]}" $torch_args
    done
  done
done

names=("${selected[@]%%|*}")
python3 bench/peer_report.py --results "$results_dir" --rows "${names[*]}" --precisions "${precision_list[*]}" \
  --peers "${peers[*]}" --optional compile --impl "$impl" --out "$out_file" \
  --title "GPT training step, labrun (lab_bench_gpt) against PyTorch (torch_gpt_step.py${torch_args:+ $torch_args}; SDPA unless told otherwise, bf16 = autocast)" \
  "${legend[@]}"
