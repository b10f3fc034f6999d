#!/usr/bin/env bash
# The project's test command, shared by the README and CI (.ci/run): install dependencies, fetch
# the data (from the local mirror ../shared/data, else from the public sources), build, run ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Warnings are errors here (and only here, so that users with other compilers can still build).
# The INI fuzzer runs for 30 s before the tests, so that ctest's summary is the last thing printed.
tools/setup.sh && tools/get_data.sh --from ../shared/data &&
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLAB_WERROR=ON && cmake --build build -j2 &&
  tools/fuzz.sh 30 &&
  (cd build && ctest --output-on-failure -j2)
