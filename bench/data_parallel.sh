#!/usr/bin/env bash
# Data-parallel throughput on this machine: one labrun run of the same GPT shape as
#   1 process x 1 thread, mpirun -np 2 x 1 thread each, and 1 process x 2 threads,
# each for 2K steps of which the last K are timed (labrun's own perf/ metrics of its last logged
# interval), in one invocation. Prints tokens/s, ms/step, the all-reduce's time per step and
# share of the step, the gradient bytes per step, and what a second node would add to each
# step on 10 and 100 Gbit/s networks (a ring all-reduce of 2 ranks sends and receives the whole
# gradient once per step: bytes / bandwidth, latency left out). See bench/README.md.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

# name | layers | heads | hidden | seq_len | batch | timed steps
readonly CONFIGS=(
  "baby|4|4|128|64|12|40"
  "shakespeare_char|6|6|384|256|64|3"
)

usage() {
  cat <<EOF
Usage: bench/data_parallel.sh [--configs "baby shakespeare_char"] [--steps K] [--build-dir DIR]

Times labrun training (experiments/shakespeare_char.ini at each shape, oneDNN, fp32) as one
process with 1 thread, two MPI ranks with 1 thread each, and one process with 2 threads.
Needs a labrun built with MPI (labrun --version says) and mpirun (tools/setup.sh installs both).
EOF
}

configs="baby shakespeare_char"
steps_override=""
build_dir="$repo_root/build"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --configs) configs=$2; shift 2 ;;
    --steps) steps_override=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "data_parallel.sh: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done
labrun="$build_dir/bin/labrun"
[[ -x "$labrun" ]] || { echo "data_parallel.sh: $labrun not found; build first (cmake --build build)" >&2; exit 1; }
if "$labrun" --version | grep -q "data-parallel training: not built"; then
  echo "data_parallel.sh: $labrun was built without MPI; run tools/setup.sh and rebuild" >&2
  exit 1
fi
command -v mpirun >/dev/null || { echo "data_parallel.sh: mpirun not found; run tools/setup.sh" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf -- "$scratch"' EXIT
echo "CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores; $("$labrun" --version | tail -1)"
printf '%-17s %-14s %12s %10s %13s %9s\n' config layout tokens/s ms/step "allreduce ms" share
for name in $configs; do
  entry=""
  for candidate in "${CONFIGS[@]}"; do [[ "${candidate%%|*}" == "$name" ]] && entry=$candidate; done
  [[ -n "$entry" ]] || { echo "data_parallel.sh: unknown config '$name'" >&2; exit 2; }
  IFS='|' read -r _ layers heads hidden seq_len batch steps <<<"$entry"
  steps=${steps_override:-$steps}
  args=("$repo_root/experiments/shakespeare_char.ini" "model.layers=$layers" "model.heads=$heads"
        "model.hidden=$hidden" "train.seq_len=$seq_len" "train.batch=$batch" "train.steps=$((2 * steps))"
        "train.log_every=$steps" "train.eval_every=0" "train.eval_at_end=false" "task.sample_tokens=0"
        "--no-progress" "--data-dir" "$repo_root/data")
  params=""
  two_rank_ms=""
  for layout in "1 process x 1" "2 ranks x 1" "1 process x 2"; do
    db="$scratch/${name}-${layout// /_}.db"
    case "$layout" in
      "1 process x 1") out=$("$labrun" "${args[@]}" backend.threads=1 "experiment.db=$db" 2>&1) ;;
      "2 ranks x 1") out=$(mpirun --allow-run-as-root --oversubscribe -np 2 "$labrun" "${args[@]}" backend.threads=1 "experiment.db=$db" 2>&1) ;;
      *) out=$("$labrun" "${args[@]}" backend.threads=2 "experiment.db=$db" 2>&1) ;;
    esac || { echo "$out" | tail -20 >&2; exit 1; }
    params=$(echo "$out" | sed -n 's/^model: \([0-9]*\) parameters.*/\1/p' | head -1)
    metric() { sqlite3 "$db" "SELECT value FROM metrics WHERE name = '$1' ORDER BY step DESC LIMIT 1"; }
    tps=$(metric perf/tokens_per_s)
    ms=$(metric perf/ms_per_step)
    comm=$(metric perf/comm_ms_per_step)
    if [[ -n "$comm" ]]; then
      share=$(awk -v c="$comm" -v s="$ms" 'BEGIN { printf "%.1f%%", 100 * c / s }')
      comm=$(printf '%.2f' "$comm")
      two_rank_ms=$ms
    else
      comm="-"
      share="-"
    fi
    printf '%-17s %-14s %12.0f %10.1f %13s %9s\n' "$name" "$layout" "$tps" "$ms" "$comm" "$share"
  done
  awk -v p="$params" -v ms="$two_rank_ms" -v n="$name" 'BEGIN {
    b = 4 * p
    printf "  %s: %d parameters, %.2f MB of f32 gradients all-reduced per step\n", n, p, b / 1e6
    for (gbit = 10; gbit <= 100; gbit *= 10) {
      t = b / (gbit * 1e9 / 8) * 1000
      printf "  2 nodes on %3d Gbit/s: + %.2f ms per step (%.1f%% of the 2-rank step of %.1f ms)\n", gbit, t, 100 * t / ms, ms
    }
  }'
done
