#!/usr/bin/env bash
# Installs what building labrun and running its tests need on Debian 12 (or a close Ubuntu).
# apt-get runs only when a package is missing, so CI on a prepared machine pays a few dpkg-query
# calls and no root rights. --bench also installs PyTorch and NumPy for bench/torch_gpt_step.py.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

readonly BUILD_PACKAGES=(
  cmake g++ make libdnnl-dev libboost-dev libboost-program-options-dev catch2
  libsqlite3-dev sqlite3 nlohmann-json3-dev python3
)
# Debian's python3 refuses `pip install` outside a virtual environment (PEP 668), so the benchmark
# gets its own environment in .venv; bench/run.sh uses .venv/bin/python3 when it exists.
readonly BENCH_VENV="$repo_root/.venv"
readonly BENCH_PYTHON_MODULES=(torch numpy)

usage() {
  cat <<EOF
Usage: tools/setup.sh [--bench] [--help]

Installs the build and test dependencies with apt-get (as root, or through sudo):
  ${BUILD_PACKAGES[*]}
Nothing is installed when every package is already present (checked with dpkg-query).

Options:
  --bench     also install the Python packages of bench/ (${BENCH_PYTHON_MODULES[*]}) with pip.
              When python3 is Debian's externally managed interpreter, they go into a virtual
              environment at $BENCH_VENV (bench/run.sh picks it up).
              For a CPU-only PyTorch wheel (much smaller) set
              PIP_INDEX_URL=https://download.pytorch.org/whl/cpu before running.
  -h, --help  show this help.
EOF
}

die() {
  echo "setup.sh: error: $*" >&2
  exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "installing packages needs root and sudo is not installed; hint: rerun as root (su -c tools/setup.sh) or install sudo"
  fi
}

package_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# Installs the given apt packages that are not installed yet; a no-op when all are present.
apt_install_missing() {
  command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script supports Debian/Ubuntu only; hint: install these with your package manager: $*"
  local missing=() package
  for package in "$@"; do
    package_installed "$package" || missing+=("$package")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup.sh: all $# apt packages already installed"
    return 0
  fi
  echo "setup.sh: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

python_has_modules() {
  local python=$1
  shift
  "$python" -c "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]" "$@" >/dev/null 2>&1
}

# True when pip would refuse to install into this interpreter (PEP 668 marker, outside a venv).
python_externally_managed() {
  "$1" - <<'PY'
import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if (not in_venv and os.path.exists(marker)) else 1)
PY
}

install_bench_python() {
  local python=python3
  [[ -x "$BENCH_VENV/bin/python3" ]] && python="$BENCH_VENV/bin/python3"
  if python_has_modules "$python" "${BENCH_PYTHON_MODULES[@]}"; then
    echo "setup.sh: $python already has ${BENCH_PYTHON_MODULES[*]} ($("$python" -c 'import torch; print("torch", torch.__version__)'))"
    return 0
  fi
  if [[ "$python" == python3 ]] && python_externally_managed python3; then
    apt_install_missing python3-venv python3-pip
    echo "setup.sh: python3 is externally managed; creating a virtual environment in $BENCH_VENV"
    python3 -m venv "$BENCH_VENV"
    python="$BENCH_VENV/bin/python3"
  elif ! "$python" -m pip --version >/dev/null 2>&1; then
    apt_install_missing python3-pip
  fi
  echo "setup.sh: $python -m pip install ${BENCH_PYTHON_MODULES[*]}"
  "$python" -m pip install "${BENCH_PYTHON_MODULES[@]}"
  python_has_modules "$python" "${BENCH_PYTHON_MODULES[@]}" ||
    die "pip finished but $python still cannot import ${BENCH_PYTHON_MODULES[*]}; hint: read the pip output above"
}

with_bench=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bench) with_bench=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; hint: see tools/setup.sh --help" ;;
  esac
done

apt_install_missing "${BUILD_PACKAGES[@]}"
if [[ $with_bench -eq 1 ]]; then
  install_bench_python
fi
