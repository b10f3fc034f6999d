#!/usr/bin/env bash
# The README's two commands, as tools/fresh_machine_check.sh reads them, are runnable scripts of the
# tree, and the second is the command .ci/run runs: CI and the fresh-machine check test the same thing.
# Usage: test_readme_commands.sh SOURCE_DIR
set -uo pipefail

source_dir=${1:?usage: test_readme_commands.sh SOURCE_DIR}
cd "$source_dir" || exit 1
mapfile -t commands < <(tools/fresh_machine_check.sh --commands)
status=$?
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

[[ $status -eq 0 && ${#commands[@]} -eq 2 ]] || fail "fresh_machine_check.sh --commands gave ${#commands[@]} commands: ${commands[*]:-none}"
for command in "${commands[@]}"; do
  script=${command%% *}
  [[ -f "$script" && -x "$script" ]] || fail "the README command '$command' names $script, which is not an executable file of the tree"
done
ci_command=$(sed -n 's/^exec \(.*\)$/\1/p' .ci/run)
[[ "${commands[1]:-}" == "$ci_command" ]] ||
  fail "the README's test command is '${commands[1]:-}' but .ci/run runs '$ci_command'"

[[ $failures -eq 0 ]] || exit 1
echo "README commands: ${commands[0]} | ${commands[1]} (= .ci/run)"
