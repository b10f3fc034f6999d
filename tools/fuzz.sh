#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS]: fuzz the experiment-file loader (tests/fuzz/fuzz_ini.cpp) with libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer for SECONDS (default 60).
#
# Installs clang if it is missing, configures its own build directory build-fuzz with clang and
# -DLAB_BUILD_FUZZ=ON, builds only the fuzz target, seeds a corpus from experiments/*.ini and runs.
# The corpus (build-fuzz/fuzz/corpus_ini) grows across runs. Exit status 0: no finding; 1: a
# finding, saved under build-fuzz/fuzz/findings/ (rerun one with: build-fuzz/fuzz/lab_fuzz_ini FILE);
# 2: usage or setup error.
#
# Environment: LAB_FUZZ_BUILD_JOBS (default 2) parallel compile jobs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-60}"
if [[ "$seconds" == "-h" || "$seconds" == "--help" ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SECONDS must be a positive integer, got '$seconds'; usage: tools/fuzz.sh [SECONDS]" >&2
  exit 2
fi

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo > /dev/null; then sudo "$@"; else
    echo "fuzz.sh: need root (or sudo) to run: $*" >&2
    exit 2
  fi
}
apt_install() {
  echo "fuzz.sh: installing $*" >&2
  as_root apt-get install -y "$@" > /dev/null || { as_root apt-get update > /dev/null && as_root apt-get install -y "$@" > /dev/null; }
}

# clang, its fuzzer runtime (a separate package on Debian 12 / Ubuntu 23.04 and later) and its
# OpenMP (the top-level CMakeLists requires OpenMP for liblab, even though the fuzzer does not use it).
command -v clang++ > /dev/null || apt_install clang
fuzzer_runtime() { ls "$(clang++ -print-resource-dir)"/lib/linux/libclang_rt.fuzzer-*.a > /dev/null 2>&1; }
fuzzer_runtime || apt_install libclang-rt-dev
fuzzer_runtime || { echo "fuzz.sh: clang has no libFuzzer runtime (libclang_rt.fuzzer); install it" >&2; exit 2; }
echo '#include <omp.h>' | clang++ -fopenmp -x c++ -fsyntax-only - 2> /dev/null || apt_install libomp-dev

build=build-fuzz
mkdir -p "$build"
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAB_BUILD_FUZZ=ON > "$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; echo "fuzz.sh: configuring $build failed (log: $build/configure.log)" >&2; exit 2; }
cmake --build "$build" -j"${LAB_FUZZ_BUILD_JOBS:-2}" --target lab_fuzz_ini

work="$build/fuzz"
corpus="$work/corpus_ini"
findings="$work/findings"
mkdir -p "$corpus" "$findings"
seeds=0
while IFS= read -r -d '' ini; do
  cp "$ini" "$corpus/seed_$(echo "$ini" | tr '/' '_')"
  seeds=$((seeds + 1))
done < <(find experiments -name '*.ini' -print0)

# Tokens of the format, so that mutations reach past the first syntax check.
cat > "$work/ini.dict" <<'DICT'
"[experiment]"
"[train]"
"[model]"
"[attention]"
"[sweep]"
"include = "
" = "
"${data}"
"${env:HOME}"
"${env:"
"}"
" ; "
" # "
"steps"
"seed"
"name"
"backend"
"precision"
"threads"
"grad_clip"
"log_every"
"eval_at_end"
"type"
"true"
"false"
"1e308"
"-9223372036854775808"
"9223372036854775807"
"\xef\xbb\xbf"
"\x00train.steps="
"\x00experiment.seed="
DICT

log="$work/last_run.log"
echo "fuzz.sh: $seeds seed files, fuzzing for $seconds s (log: $log)"
set +e
"$work/lab_fuzz_ini" "$corpus" -dict="$work/ini.dict" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -max_len=8192 -artifact_prefix="$findings/" -print_final_stats=1 > "$log" 2>&1
status=$?
set -e
executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs)' "$log" | tail -2 || true
echo "fuzz.sh: ${executions:-?} executions, corpus $(find "$corpus" -type f | wc -l) files"
if [[ $status -ne 0 ]]; then
  grep -E 'FINDING|ERROR: |SUMMARY: |runtime error' "$log" | head -20 >&2 || true
  echo "fuzz.sh: FINDING (libFuzzer exit status $status); inputs in $findings/, full log in $log" >&2
  exit 1
fi
echo "fuzz.sh: no findings"
