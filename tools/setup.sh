#!/usr/bin/env bash
# Installs what building labrun and running its tests need on Debian 12 (or a close Ubuntu).
# apt-get runs only when a package is missing, so CI on a prepared machine pays a few dpkg-query
# calls and no root rights. --test also installs what the tests alone use (Chromium and its driver
# for the dashboard's browser test; the Python modules safetensors, numpy and selenium); --bench
# installs PyTorch, NumPy, transformers and safetensors for bench/.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

# libdnnl-dev only recommends OpenCL's headers and ICD loader, and apt-get here installs no
# recommends, but Debian's oneDNN is built with the OpenCL GPU runtime and its CMake package
# (dnnl-config.cmake) requires them: ocl-icd-opencl-dev and opencl-headers.
# labdb's dashboard (`labdb serve`) uses cpp-httplib and Chart.js, its PNG charts Cairo with the
# DejaVu fonts; all three are found with pkg-config or by path, and a build without them leaves the
# feature out with one configure line.
# Open MPI (libopenmpi-dev, and openmpi-bin's mpirun) is what data-parallel training builds on;
# a build without it leaves that feature out with one configure line.
readonly BUILD_PACKAGES=(
  cmake g++ make pkg-config libdnnl-dev ocl-icd-opencl-dev opencl-headers libboost-dev
  libboost-program-options-dev catch2 libsqlite3-dev sqlite3 nlohmann-json3-dev python3
  libcpp-httplib-dev libjs-chart.js libcairo2-dev fonts-dejavu-core libopenmpi-dev openmpi-bin
)
# The dashboard's browser test drives Debian's headless Chromium through Selenium (PyPI); the
# Slurm sweep test starts a one-node cluster of Debian's Slurm and munge (tests/scripts/slurm_cluster.sh),
# which finds free ports with iproute2's ss (not in a minimal Debian).
readonly TEST_APT_PACKAGES=(chromium chromium-driver slurm-wlm munge iproute2)
# Debian's python3 refuses `pip install` outside a virtual environment (PEP 668), so the tests and
# the benchmarks get their own environment in .venv; bench/run.sh, the tests and
# tools/get_pretrained.sh use .venv/bin/python3 when it exists.
readonly PYTHON_VENV="$repo_root/.venv"
readonly TEST_PYTHON_MODULES=(safetensors numpy selenium)
readonly BENCH_PYTHON_MODULES=(torch numpy transformers safetensors)
readonly CUDNN_FRONTEND_PACKAGE="nvidia-cudnn-frontend==1.32.0"

usage() {
  cat <<EOF
Usage: tools/setup.sh [--test] [--bench] [--help]

Installs the build and test dependencies with apt-get (as root, or through sudo):
  ${BUILD_PACKAGES[*]}
Nothing is installed when every package is already present (checked with dpkg-query).
When a CUDA toolkit is present (nvcc on PATH or /usr/local/cuda/bin/nvcc), also installs cuDNN's
C++ frontend headers for the cuda backend: pip install --no-deps $CUDNN_FRONTEND_PACKAGE.

Options:
  --test      also install what the tests alone need: ${TEST_APT_PACKAGES[*]} with apt-get (the
              dashboard's browser test, the Slurm sweep test) and the Python modules ${TEST_PYTHON_MODULES[*]} with pip
              (tools/test.sh passes this).
  --bench     also install the Python packages of bench/ (${BENCH_PYTHON_MODULES[*]}) with pip.
              When python3 is Debian's externally managed interpreter, they go into a virtual
              environment at $PYTHON_VENV (bench/run.sh picks it up).
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

# The interpreter pip installs into: $PYTHON_VENV's when it exists, else python3.
python_for_pip() {
  if [[ -x "$PYTHON_VENV/bin/python3" ]]; then echo "$PYTHON_VENV/bin/python3"; else echo python3; fi
}

# Makes python_for_pip usable with pip: creates $PYTHON_VENV when python3 is Debian's externally
# managed interpreter, installs pip when it is missing. Prints the interpreter.
prepare_pip() {
  local python
  python=$(python_for_pip)
  if [[ "$python" == python3 ]] && python_externally_managed python3; then
    apt_install_missing python3-venv python3-pip >&2
    echo "setup.sh: python3 is externally managed; creating a virtual environment in $PYTHON_VENV" >&2
    python3 -m venv "$PYTHON_VENV" >&2
    python="$PYTHON_VENV/bin/python3"
  elif ! "$python" -m pip --version >/dev/null 2>&1; then
    apt_install_missing python3-pip >&2
  fi
  echo "$python"
}

# Installs Python modules with pip into python3, or into $PYTHON_VENV when python3 is Debian's
# externally managed interpreter; a no-op when they import already.
install_python_modules() {
  local python
  python=$(python_for_pip)
  if python_has_modules "$python" "$@"; then
    echo "setup.sh: $python already has $*"
    return 0
  fi
  python=$(prepare_pip)
  echo "setup.sh: $python -m pip install $*"
  "$python" -m pip install "$@"
  python_has_modules "$python" "$@" ||
    die "pip finished but $python still cannot import $*; hint: read the pip output above"
}

# The cuda backend, built when a CUDA toolkit is present, compiles against cuDNN's header-only C++
# frontend, which ships in the PyPI package nvidia-cudnn-frontend (its headers land in
# <site-packages>/include, where CMake looks). --no-deps: only the headers are used, and the
# package's dependencies would pull a second copy of cuDNN.
install_cudnn_frontend() {
  local python include
  python=$(python_for_pip)
  include="$("$python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" 2>/dev/null)/include"
  if [[ -f "$include/cudnn_frontend.h" ]]; then
    echo "setup.sh: cuDNN frontend headers present in $include"
    return 0
  fi
  python=$(prepare_pip)
  echo "setup.sh: $python -m pip install --no-deps $CUDNN_FRONTEND_PACKAGE (cuDNN's C++ frontend headers)"
  "$python" -m pip install --no-deps "$CUDNN_FRONTEND_PACKAGE"
  include="$("$python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/include"
  [[ -f "$include/cudnn_frontend.h" ]] ||
    die "pip installed $CUDNN_FRONTEND_PACKAGE but $include/cudnn_frontend.h is missing; hint: configure with -DLAB_CUDNN_FRONTEND_DIR=<folder with cudnn_frontend.h> or -DLAB_WITH_CUDA=OFF"
}

with_bench=0
with_test=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bench) with_bench=1; shift ;;
    --test) with_test=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; hint: see tools/setup.sh --help" ;;
  esac
done

apt_install_missing "${BUILD_PACKAGES[@]}"
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
  install_cudnn_frontend
fi
if [[ $with_test -eq 1 ]]; then
  apt_install_missing "${TEST_APT_PACKAGES[@]}"
  install_python_modules "${TEST_PYTHON_MODULES[@]}"
fi
if [[ $with_bench -eq 1 ]]; then
  install_python_modules "${BENCH_PYTHON_MODULES[@]}"
fi
