# shellcheck shell=bash
# Sourced by the bench/ scripts: the Python interpreter that runs the peer implementations, and
# what run.sh and bert.sh share to run benchmarks and describe the machine for bench/peer_report.py.

# The calling script's error exit: "run.sh: error: MESSAGE" on stderr, status 1.
bench_die() {
  echo "${0##*/}: error: $*" >&2
  exit 1
}

# bench_require_value OPTION ARGS_LEFT VALUE: dies unless OPTION has a non-empty value after it.
bench_require_value() {
  [[ $2 -ge 2 && -n "$3" ]] || bench_die "$1 needs a value; hint: see bench/${0##*/} --help"
}

bench_is_count() { [[ "$1" =~ ^[0-9]+$ ]]; }

# Checks the options run.sh and bert.sh share; prints the message and returns 1 on the first bad
# one (the caller dies with it).
bench_check_options() {
  local threads=$1 impl=$2 precisions=$3 peak_sizes=$4 precision
  local -a precision_list
  [[ "$threads" =~ ^[0-9]+$ && $threads -gt 0 ]] || { echo "--threads '$threads' is not a positive integer"; return 1; }
  case "$impl" in both | labrun | pytorch) ;; *) echo "--impl '$impl' must be both, labrun or pytorch"; return 1 ;; esac
  read -r -a precision_list <<<"$precisions"
  [[ ${#precision_list[@]} -gt 0 ]] || { echo "--precisions is empty; hint: f32, bf16 or \"f32 bf16\""; return 1; }
  for precision in "${precision_list[@]}"; do
    case "$precision" in f32 | bf16) ;; *) echo "--precisions: '$precision' is not f32 or bf16"; return 1 ;; esac
  done
  [[ "$peak_sizes" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || {
    echo "--peak-sizes '$peak_sizes' is not a comma-separated list of positive sizes, e.g. 1024,2048"
    return 1
  }
}

# bench_python REPO_ROOT [PY]: PY if given, else $PYTHON, else REPO_ROOT/.venv/bin/python3 (what
# tools/setup.sh --bench creates where pip may not install system-wide), else python3.
bench_python() {
  local repo_root=$1 chosen=${2:-${PYTHON:-}}
  if [[ -z "$chosen" ]]; then
    if [[ -x "$repo_root/.venv/bin/python3" ]]; then chosen="$repo_root/.venv/bin/python3"; else chosen=python3; fi
  fi
  echo "$chosen"
}

# bench_run_one OUTPUT_FILE COMMAND...: runs one benchmark; keeps the JSON lines of its stdout
# (those starting with '{') in OUTPUT_FILE and its exit status in OUTPUT_FILE.status, where
# bench/peer_report.py reads both. stderr passes through so that compile warnings and errors stay
# visible. It never fails itself: a failed run is a cell of the report, not the end of the script.
bench_run_one() {
  local output_file=$1
  shift
  local me=${0##*/} status=0
  echo "$me: $*" >&2
  "$@" >"$output_file.stdout" || status=$?
  echo "$status" >"$output_file.status"
  grep '^{' "$output_file.stdout" >"$output_file" || true
  if [[ $status -ne 0 ]]; then
    echo "$me: the command above failed (exit status $status)" >&2
  elif [[ ! -s "$output_file" ]]; then
    echo "$me: the command above printed no JSON line" >&2
  fi
}

# bench_describe_machine OUT_FILE THREADS LAB_BENCH_MATMUL PYTHON: writes the lines the report
# starts with: the CPU, which of its bf16 / AVX-512 / AVX2 instruction sets the kernel reports, the
# instruction set oneDNN dispatches to in labrun (it names it on its first primitive when
# ONEDNN_VERBOSE=1), and the versions on PyTorch's side. LAB_BENCH_MATMUL or PYTHON may be "" (that
# side is not run).
bench_describe_machine() {
  local out_file=$1 threads=$2 lab_matmul=$3 python_bin=$4
  local cpu flags present=() flag verbose version isa
  if command -v lscpu >/dev/null; then
    cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
    flags=$(lscpu | sed -n 's/^Flags:[[:space:]]*//p' | head -n 1)
  else
    cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
    flags=$(sed -n 's/^flags[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
  fi
  for flag in amx_bf16 avx512_bf16 avx512f avx2; do
    [[ " $flags " == *" $flag "* ]] && present+=("$flag")
  done
  {
    echo "cpu: ${cpu:-unknown} ($(nproc) cores online); flags: ${present[*]:-none of amx_bf16 avx512_bf16 avx512f avx2}"
    if [[ -n "$lab_matmul" ]]; then
      verbose=$(ONEDNN_VERBOSE=1 "$lab_matmul" --sizes 64 --repeats 1 --no-bf16 --threads "$threads" 2>&1) ||
        echo "${0##*/}: $lab_matmul --sizes 64 failed: $(tail -n 1 <<<"$verbose")" >&2
      version=$(grep -o -m 1 'oneDNN v[0-9][0-9.]*' <<<"$verbose") || version="oneDNN version unknown"
      isa=$(grep -o -m 1 'isa:.*' <<<"$verbose") || isa="isa:unknown (ONEDNN_VERBOSE=1 printed no isa line)"
      echo "labrun oneDNN: $version, isa: ${isa#isa:}"
    fi
    if [[ -n "$python_bin" ]]; then
      "$python_bin" - <<'PY' || echo "pytorch: unknown ($python_bin failed to describe torch)"
import re
import torch
# The CPU wheels multiply fp32 through their BLAS (MKL on x86) and bf16 through their own oneDNN.
config = torch.__config__.show()
onednn = re.search(r"(?:MKL-DNN|oneDNN) (v[0-9.]+)", config)
blas = re.search(r"BLAS_INFO=(\w+)", config)
print(f"pytorch: {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
      f"oneDNN {onednn.group(1) if onednn else 'unknown'}, BLAS {blas.group(1) if blas else 'unknown'}")
PY
    fi
  } >"$out_file"
}

# bench_matmul_peaks RESULTS_DIR THREADS SIZES LAB_BENCH_MATMUL PYTHON: both sides' fp32 and bf16
# matmul peaks on the same square sizes (comma-separated) and thread count, into
# RESULTS_DIR/peak.labrun.json and peak.pytorch.json. LAB_BENCH_MATMUL or PYTHON may be "".
bench_matmul_peaks() {
  local results_dir=$1 threads=$2 sizes=$3 lab_matmul=$4 python_bin=$5
  local bench_dir
  bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  if [[ -n "$lab_matmul" ]]; then
    bench_run_one "$results_dir/peak.labrun.json" "$lab_matmul" --sizes "$sizes" --threads "$threads"
  fi
  if [[ -n "$python_bin" ]]; then
    bench_run_one "$results_dir/peak.pytorch.json" "$python_bin" "$bench_dir/torch_matmul_peak.py" \
      --sizes "$sizes" --threads "$threads"
  fi
}
