#!/usr/bin/env bash
# Runs the main experiment end to end on a fresh checkout: install dependencies, fetch the data,
# build, then pretrain the small BERT of experiments/bert_mlm.ini with masked language modelling on
# WikiText-2. Extra arguments go to labrun, e.g. `tools/run_main.sh train.steps=100` or `--dry-run`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools/setup.sh
tools/get_data.sh --from ../shared/data
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
# The main job needs labrun, labdb and the plugins; the tests and benchmarks build with tools/test.sh.
cmake --build build -j2 --target labrun labdb lab_plugins
build/bin/labrun experiments/bert_mlm.ini "$@"
