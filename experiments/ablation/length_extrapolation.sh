#!/usr/bin/env bash
# The length-extrapolation study of experiments/ablation/length_extrapolation.ini in one command:
# train the 9 runs (a rerun skips finished ones), evaluate each at 64, 128 and 256 tokens of
# context (labrun eval records val@64/loss, val@128/loss, val@256/loss as metrics of the run), and
# print one table per length: mean +- std over the 3 seeds per position scheme.
#   experiments/ablation/length_extrapolation.sh [--jobs N] [BUILD_DIR]
# About 7.5 minutes on 2 cores (--jobs 2): 6 minutes of training, 1.5 of evaluation (Xeon, AVX-512).
set -euo pipefail
jobs=2
if [[ ${1:-} == --jobs ]]; then jobs=$2; shift 2; fi
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
db=results/length_extrapolation.db
labrun=$build/bin/labrun
labdb=$build/bin/labdb
for tool in "$labrun" "$labdb"; do
    [[ -x $tool ]] || { echo "length_extrapolation.sh: $tool is not built (cmake --build $build)" >&2; exit 2; }
done

"$labrun" "$here/length_extrapolation.ini" --jobs "$jobs"
runs=$("$labdb" --db "$db" runs --experiment length_extrapolation --status finished --json |
       grep -o '"id": *[0-9]*' | grep -o '[0-9]*$')
[[ -n $runs ]] || { echo "length_extrapolation.sh: no finished runs in $db" >&2; exit 1; }
for run in $runs; do
    for length in 64 128 256; do
        "$labrun" eval "$run" "train.seq_len=$length" --db "$db" --quiet
    done
done
for length in 64 128 256; do
    echo
    echo "## evaluated at $length tokens (trained at 64)"
    "$labdb" --db "$db" ablate --experiment length_extrapolation --by model.position --by attention.type \
        --metric "val@$length/loss" \
        --baseline learned,softmax --cost perf/tokens_per_s
done
