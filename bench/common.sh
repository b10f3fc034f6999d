# Sourced by the bench/ scripts: the Python interpreter that runs the peer implementations.
# bench_python REPO_ROOT [PY]: PY if given, else $PYTHON, else REPO_ROOT/.venv/bin/python3 (what
# tools/setup.sh --bench creates where pip may not install system-wide), else python3.
bench_python() {
  local repo_root=$1 chosen=${2:-${PYTHON:-}}
  if [[ -z "$chosen" ]]; then
    if [[ -x "$repo_root/.venv/bin/python3" ]]; then chosen="$repo_root/.venv/bin/python3"; else chosen=python3; fi
  fi
  echo "$chosen"
}
