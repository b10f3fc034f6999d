#!/usr/bin/env bash
# Compares labrun's BERT masked-LM training step with its strongest PyTorch peer on the same shapes,
# machine and thread count, in one invocation: for each precision (f32, bf16) it runs
# `lab_bench_step experiments/bert_mlm.ini task.mask_count=fixed experiment.precision=P` (4 layers,
# 256 wide, 4 heads, T = 128, batch 32, WikiText-2 batches) and bench/torch_bert_step.py, which
# trains transformers' BertForMaskedLM (SDPA attention, bf16 by autocast) on random batches with
# the same number of masked positions, measures both sides' matmul peaks and prints one report
# (bench/peer_report.py). It builds nothing; see bench/README.md.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

# experiments/bert_mlm.ini's shape (its model is experiments/bert/bert_small.ini, BERT-Mini): the
# PyTorch side is given the same, and the model FLOPs below are counted from it.
readonly LAYERS=4 HIDDEN=256 HEADS=4 INTERMEDIATE=1024 VOCAB=30522 SEQ_LEN=128 BATCH=32
# task.mask_count = fixed masks max(1, round(mask_prob * (T - 2))) positions per sequence: 19.
readonly MASKED=$(((15 * (SEQ_LEN - 2) + 50) / 100))

usage() {
  cat <<EOF
Usage: bench/bert.sh [options]

Times BERT masked-LM training steps (forward, loss on the masked positions, backward, clip, AdamW)
of labrun and of PyTorch on experiments/bert_mlm.ini's shape ($LAYERS layers, $HIDDEN wide, $HEADS heads, FFN
$INTERMEDIATE, vocabulary $VOCAB, T = $SEQ_LEN, batch $BATCH, $MASKED masked positions per sequence), for each precision:
  labrun    build/bin/lab_bench_step experiments/bert_mlm.ini task.mask_count=fixed
            experiment.precision=fp32|bf16 (WikiText-2 batches; the prediction head on the masked
            rows only, as task/mlm computes it)
  eager     bench/torch_bert_step.py --masked-rows-only: transformers' BertForMaskedLM with
            attn_implementation="sdpa", the head on the masked rows only, as labrun; bf16 =
            forward and loss under torch.autocast(dtype=torch.bfloat16)
  compile   the same under torch.compile (the untimed warm-up steps compile it)
  full      BertForMaskedLM as transformers runs it, eager: logits over all B x T positions
The peer is the fastest PyTorch run; if compiling fails the report says why. First it measures the
matmul peak of both sides in both precisions (build/bin/lab_bench_matmul,
bench/torch_matmul_peak.py: the same square sizes and threads) and notes the CPU, the instruction
set oneDNN dispatches to (ONEDNN_VERBOSE=1) and the versions.
ratio = peer ms/step / labrun ms/step (> 1: labrun is faster). MFU = model FLOPs per step / time /
the matmul peak of that side at that precision, the model FLOPs counted as nanoGPT counts a GPT's:
6 per weight per token through the encoder's matmuls, 12 L C T per token for attention, and 6 per
weight of the head's transform and decoder per masked position only. Exit status 1 when a labrun,
eager or full run failed, else 0.
Build first: cmake --build build --target lab_bench_step lab_bench_matmul. PyTorch and
transformers: tools/setup.sh --bench. Data: tools/get_data.sh (wikitext-2, bert-base-uncased).

Options:
  --precisions "P Q"   f32 and/or bf16 (default: "f32 bf16")
  --steps N            timed steps (default: 5)
  --warmup W           untimed warm-up steps (default: 3; the compile runs take at least 1)
  --threads N          threads for both implementations and both peaks (default: 2)
  --no-compile         skip the torch.compile runs (a compilation takes a minute or more)
  --no-full-head       skip the BertForMaskedLM-as-is runs
  --impl WHICH         both (default), labrun or pytorch
  --build-dir DIR      build tree holding bin/lab_bench_step and bin/lab_bench_matmul (default: build)
  --python PY          interpreter with torch and transformers (default: \$PYTHON, else
                       .venv/bin/python3, else python3)
  --peak-sizes "A,B"   square sizes of both matmul peaks (default: 1024,2048,3072; the best counts)
  --out FILE           also append every result, the peaks and the machine as JSON lines to FILE
  -h, --help           show this help
EOF
}

# shellcheck source=bench/common.sh
source "$repo_root/bench/common.sh"

precisions="f32 bf16"
steps=5
warmup=3
threads=2
compile=true
full_head=true
impl=both
build_dir="build"
python_bin="${PYTHON:-}"
peak_sizes="1024,2048,3072"
out_file=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --precisions) bench_require_value "$1" $# "${2:-}"; precisions=$2; shift 2 ;;
    --steps) bench_require_value "$1" $# "${2:-}"; steps=$2; shift 2 ;;
    --warmup) bench_require_value "$1" $# "${2:-}"; warmup=$2; shift 2 ;;
    --threads) bench_require_value "$1" $# "${2:-}"; threads=$2; shift 2 ;;
    --no-compile) compile=false; shift ;;
    --no-full-head) full_head=false; shift ;;
    --impl) bench_require_value "$1" $# "${2:-}"; impl=$2; shift 2 ;;
    --build-dir) bench_require_value "$1" $# "${2:-}"; build_dir=$2; shift 2 ;;
    --python) bench_require_value "$1" $# "${2:-}"; python_bin=$2; shift 2 ;;
    --peak-sizes) bench_require_value "$1" $# "${2:-}"; peak_sizes=$2; shift 2 ;;
    --out) bench_require_value "$1" $# "${2:-}"; out_file=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) bench_die "unknown argument '$1'; hint: see bench/bert.sh --help" ;;
  esac
done

{ bench_is_count "$steps" && [[ $steps -gt 0 ]]; } || bench_die "--steps '$steps' is not a positive integer"
bench_is_count "$warmup" || bench_die "--warmup '$warmup' is not a non-negative integer"
problem=$(bench_check_options "$threads" "$impl" "$precisions" "$peak_sizes") || bench_die "$problem"
read -r -a precision_list <<<"$precisions"

# Relative paths given by the user are relative to where they ran the script; the rest of the
# script runs from the repository root (experiments/ and data/ are found from there).
[[ "$build_dir" == /* ]] || build_dir="$PWD/$build_dir"
[[ -z "$out_file" || "$out_file" == /* ]] || out_file="$PWD/$out_file"
cd "$repo_root"

python_bin=$(bench_python "$repo_root" "$python_bin")
lab_bench="$build_dir/bin/lab_bench_step"
peak_bench="$build_dir/bin/lab_bench_matmul"
if [[ "$impl" != pytorch ]]; then
  for program in "$lab_bench" "$peak_bench"; do
    [[ -x "$program" ]] ||
      bench_die "$program not found; hint: cmake --build build --target lab_bench_step lab_bench_matmul (or --build-dir DIR, or --impl pytorch)"
  done
  for file in data/wikitext-2/valid.txt data/bert-base-uncased/vocab.txt; do
    [[ -f "$file" ]] || bench_die "$repo_root/$file is missing; hint: tools/get_data.sh (or --impl pytorch)"
  done
fi
if [[ "$impl" != labrun ]]; then
  "$python_bin" -c "import torch, transformers" >/dev/null 2>&1 ||
    bench_die "$python_bin cannot import torch and transformers; hint: tools/setup.sh --bench, or --python PY (or --impl labrun)"
fi

results_dir=$(mktemp -d)
trap 'rm -rf -- "$results_dir"' EXIT

# The machine and both peaks first: the report divides by the peaks.
lab_side="" torch_side=""
[[ "$impl" == pytorch ]] || lab_side=$peak_bench
[[ "$impl" == labrun ]] || torch_side=$python_bin
bench_describe_machine "$results_dir/machine.txt" "$threads" "$lab_side" "$torch_side"
if [[ -n "$torch_side" ]]; then
  "$python_bin" -c 'import transformers; print("transformers:", transformers.__version__)' >>"$results_dir/machine.txt"
fi
bench_matmul_peaks "$results_dir" "$threads" "$peak_sizes" "$lab_side" "$torch_side"

peers=(eager)
[[ "$compile" == false ]] || peers+=(compile)
[[ "$full_head" == false ]] || peers+=(full)
run_args=(--steps "$steps" --warmup "$warmup" --threads "$threads")
torch_shape=(--layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS" --intermediate "$INTERMEDIATE" --vocab "$VOCAB"
  --seq-len "$SEQ_LEN" --batch "$BATCH" --mask-prob 0.15)
for precision in "${precision_list[@]}"; do
  if [[ "$impl" != pytorch ]]; then
    # The experiment file spells f32 'fp32' ([experiment] precision = fp32 | bf16).
    bench_run_one "$results_dir/bert_mlm.$precision.labrun.json" "$lab_bench" experiments/bert_mlm.ini \
      task.mask_count=fixed "experiment.precision=${precision/#f32/fp32}" "${run_args[@]}"
  fi
  [[ "$impl" != labrun ]] || continue
  for role in "${peers[@]}"; do
    case "$role" in
      eager) role_args=(--masked-rows-only) ;;
      compile) role_args=(--masked-rows-only --compile) ;;
      full) role_args=() ;;
    esac
    bench_run_one "$results_dir/bert_mlm.$precision.$role.json" "$python_bin" bench/torch_bert_step.py \
      "${torch_shape[@]}" "${run_args[@]}" --precision "$precision" "${role_args[@]}"
  done
done

# Model FLOPs per step (see --help): the encoder's matmul weights per layer (Q, K, V, output: 4 C^2;
# the FFN: 2 C I) for every token, attention's QK^T and PV, and the head's transform (C^2) and tied
# decoder (C V) for the masked rows only. Biases and LayerNorms (< 0.5% of the weights) are left out.
tokens=$((BATCH * SEQ_LEN))
model_flops=$((6 * tokens * LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE)
  + 12 * LAYERS * HIDDEN * SEQ_LEN * tokens
  + 6 * BATCH * MASKED * (HIDDEN * HIDDEN + HIDDEN * VOCAB)))

python3 bench/peer_report.py --results "$results_dir" --rows bert_mlm --precisions "${precision_list[*]}" \
  --peers "${peers[*]}" --optional compile --impl "$impl" --out "$out_file" --flops-per-step "$model_flops" \
  --title "BERT masked-LM training step, labrun (lab_bench_step experiments/bert_mlm.ini) against PyTorch (transformers' BertForMaskedLM, SDPA attention, bf16 = autocast)" \
  --legend "bert_mlm: $LAYERS layers, $HIDDEN wide, $HEADS heads, FFN $INTERMEDIATE, vocabulary $VOCAB, T $SEQ_LEN, batch $BATCH, $MASKED masked positions per sequence; timed steps $steps, warm-up $warmup; $model_flops model FLOPs per step" \
  --legend "eager, compile: the prediction head on the masked rows only, as labrun's task/mlm; full: BertForMaskedLM as is (logits over all B x T positions), eager"
