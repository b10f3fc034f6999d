#!/usr/bin/env bash
# The project's test command, shared by the README and CI (.ci/run): install dependencies, fetch
# the data (from the local mirror ../shared/data, else from the public sources), build, run ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools/setup.sh && tools/get_data.sh --from ../shared/data && cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2 && (cd build && ctest --output-on-failure -j2)
