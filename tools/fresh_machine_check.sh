#!/usr/bin/env bash
# tools/fresh_machine_check.sh: runs the README's two commands on a fresh Debian 12 machine, each in
# a clean root of its own, and reports their exit status, time and last lines of output.
#
# A green CI can hide a missing install step (CI runs where earlier work already installed things);
# this check cannot: each root is made by `debootstrap --variant=minbase bookworm` with nothing else
# installed, holds a clean clone of the committed tree (HEAD, not the working tree) at
# /work/labrun and the data mirror at /work/shared/data (so that the README's
# `../shared/data` resolves), and runs one command as root under chroot. The root gets what a
# container on this network is given, no more: /etc/resolv.conf, an /etc/hosts naming localhost,
# the host's CA certificates
# (/etc/ssl/certs/ca-certificates.crt, /usr/local/share/ca-certificates), /etc/pip.conf and the
# CA-bundle environment variables (PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE).
# The commands are read from the README's "The two commands" section, so the check follows it.
# The CUDA toolkit is not in the roots: the build must skip the cuda plugin there.
#
# Needs root (debootstrap, chroot, mounts in a private mount namespace) and a few GB of disk.
# Too slow for every CI run (about 45 minutes on 2 cores): run it before closing an issue that
# changes an install step.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

readonly SUITE=bookworm
readonly MIRROR_URL="http://deb.debian.org/debian"
readonly CHROOT_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The host's variables that tell TLS clients which CA bundle to trust; passed into the root when set.
readonly CA_VARIABLES=(PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE)

usage() {
  cat <<EOF
Usage: tools/fresh_machine_check.sh [--work DIR] [--data DIR | --without-data] [--only N]
                                    [--tail N] [--keep] [--commands] [--help]

Makes a clean Debian 12 root with debootstrap (--variant=minbase $SUITE), and for each of the
README's two commands (section "The two commands") copies it to a root of its own, puts a clean
clone of this repository's HEAD at /work/labrun and the data mirror at /work/shared/data, and runs
the command there under chroot as root. Prints each command's exit status, wall time and last
lines of output; the full logs stay in the work folder. Exits 0 when both commands exit 0.

Options:
  --work DIR       where the roots and logs go (default: a new folder under /var/tmp); the roots
                   are deleted at the end unless --keep, the logs are kept.
  --data DIR       the data mirror to copy in (default: $repo_root/../shared/data).
  --without-data   copy no data mirror in: then the commands must stop at the data step, saying
                   which file they could not fetch and how to provide it, with no traceback and no
                   file left in data/; the check passes when they do exactly that.
  --only N         run only the README's command N (1: the main job, 2: the test suite).
  --tail N         lines of each command's output to print (default 25).
  --keep           keep the roots (for a look inside: chroot DIR/root-N bash).
  --commands       print the two commands read from the README, one a line, and exit.
  -h, --help       show this help.

Commits first: the roots get HEAD, not uncommitted changes.
EOF
}

die() {
  echo "fresh_machine_check.sh: error: $*" >&2
  exit 2
}

say() { echo "fresh_machine_check.sh: $*"; }

work_dir=""
data_dir="$repo_root/../shared/data"
with_data=1
only=""
tail_lines=25
keep=0
print_commands=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --work) [[ $# -ge 2 ]] || die "--work needs a folder"; work_dir=$2; shift 2 ;;
    --data) [[ $# -ge 2 ]] || die "--data needs a folder"; data_dir=$2; shift 2 ;;
    --without-data) with_data=0; shift ;;
    --only) [[ $# -ge 2 && "$2" =~ ^[12]$ ]] || die "--only takes 1 or 2"; only=$2; shift 2 ;;
    --tail) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--tail takes a number of lines"; tail_lines=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --commands) print_commands=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; hint: see tools/fresh_machine_check.sh --help" ;;
  esac
done

# The README's two commands: the indented lines of its "## The two commands" section.
mapfile -t commands < <(awk '/^## /{in_section = ($0 == "## The two commands")} in_section && /^    [^ ]/{sub(/^    /, ""); print}' \
  "$repo_root/README.md")
[[ ${#commands[@]} -eq 2 ]] ||
  die "README.md's section '## The two commands' should hold exactly two indented command lines, found ${#commands[@]}: ${commands[*]:-none}"

if [[ $print_commands -eq 1 ]]; then
  printf '%s\n' "${commands[@]}"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot and mounts); hint: sudo tools/fresh_machine_check.sh"
[[ $(uname -s) == Linux ]] || die "needs Linux (debootstrap, chroot, unshare)"
command -v git >/dev/null 2>&1 || die "git is needed to clone the tree; hint: apt-get install git"
if [[ $with_data -eq 1 ]]; then
  [[ -d "$data_dir" ]] || die "data mirror '$data_dir' not found; hint: --data DIR, or --without-data to check the commands without it"
  data_dir=$(cd "$data_dir" && pwd)
fi

for tool in debootstrap unshare chroot; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "installing debootstrap (for $tool)"
    DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap util-linux coreutils >/dev/null
    command -v "$tool" >/dev/null 2>&1 || die "$tool is still missing after installing debootstrap"
  fi
done

if [[ -z "$work_dir" ]]; then
  work_dir=$(mktemp -d /var/tmp/labrun-fresh.XXXXXX)
else
  mkdir -p -- "$work_dir"
  work_dir=$(cd "$work_dir" && pwd)
fi
base="$work_dir/base"
logs="$work_dir/logs"
mkdir -p -- "$logs"

# Nothing may stay mounted under a root that is deleted (rm -rf through a bind mount of /dev would
# wipe the host's): the mounts live in a private mount namespace per command and vanish with it;
# this refuses to delete a folder that still has a mount below it all the same.
remove_root() {
  local root=$1
  [[ -d "$root" ]] || return 0
  if findmnt -rn -o TARGET | grep -q -- "^$root\(/\|$\)"; then
    echo "fresh_machine_check.sh: $root still has mounts below it; not deleting it" >&2
    return 1
  fi
  rm -rf --one-file-system -- "$root"
}

cleanup() {
  local status=$?
  if [[ $keep -eq 0 ]]; then
    remove_root "$base" || true
    local root
    for root in "$work_dir"/root-*; do remove_root "$root" || true; done
  fi
  exit "$status"
}
trap cleanup EXIT

clock() { date +%s; }
minutes() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# 1. The base root: debootstrap, then what a container on this network is given.
start=$(clock)
say "debootstrap --variant=minbase $SUITE into $base (log: $logs/debootstrap.log)"
if ! debootstrap --variant=minbase "$SUITE" "$base" "$MIRROR_URL" >"$logs/debootstrap.log" 2>&1; then
  tail -n 20 "$logs/debootstrap.log" >&2
  die "debootstrap failed (log: $logs/debootstrap.log); hint: is $MIRROR_URL reachable?"
fi
# The sources of Debian's own bookworm container image: the release, its updates and security.
cat >"$base/etc/apt/sources.list" <<EOF
deb $MIRROR_URL $SUITE main
deb $MIRROR_URL $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
cp -L /etc/resolv.conf "$base/etc/resolv.conf"
# debootstrap writes no /etc/hosts, and every container gets one: without it "localhost" does not
# resolve (Selenium reaches chromedriver through that name).
cat >"$base/etc/hosts" <<EOF
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
127.0.1.1 $(hostname)
EOF
mkdir -p "$base/etc/ssl/certs" "$base/usr/local/share/ca-certificates"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp -L /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"
fi
# Local CAs survive the root's own update-ca-certificates (run when a package installs ca-certificates).
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp -L /usr/local/share/ca-certificates/*.crt "$base/usr/local/share/ca-certificates/"
fi
if [[ -f /etc/pip.conf ]]; then cp -L /etc/pip.conf "$base/etc/pip.conf"; fi
base_seconds=$(($(clock) - start))
say "base root ready in $(minutes "$base_seconds"): $(chroot "$base" dpkg-query -W -f='.\n' | wc -l) packages, $(du -sh "$base" | cut -f1)"

# The tree: a clean clone of HEAD (what a new user gets), never the working tree.
clone="$work_dir/clone"
rm -rf -- "$clone"
git clone --quiet --no-local "$repo_root" "$clone"
revision=$(git -C "$clone" rev-parse --short HEAD)
if [[ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no)" ]]; then
  say "note: the working tree has uncommitted changes; the roots get HEAD ($revision) without them"
fi

env_vars=(HOME=/root PATH="$CHROOT_PATH" LANG=C.UTF-8 TERM=dumb)
for variable in "${CA_VARIABLES[@]}"; do
  if [[ -n "${!variable:-}" ]]; then env_vars+=("$variable=${!variable}"); fi
done

# Runs command number $1 in a fresh copy of the base root; fills results[$1].
declare -A results
run_command() {
  local index=$1 command=${commands[$(($1 - 1))]}
  local root="$work_dir/root-$index" log="$logs/command-$index.log"
  remove_root "$root"
  cp -a -- "$base" "$root"
  mkdir -p "$root/work/shared"
  cp -a -- "$clone" "$root/work/labrun"
  if [[ $with_data -eq 1 ]]; then cp -a -- "$data_dir" "$root/work/shared/data"; fi

  say "[$index] $command   (root: $root, log: $log)"
  local began status
  began=$(clock)
  set +e
  # A private mount and PID namespace: /proc, /sys and /dev are mounted for the command alone and
  # vanish with it, and so does every process it leaves behind.
  unshare --mount --pid --fork --propagation private -- /bin/sh -c '
    root=$1; shift
    mount -t proc proc "$root/proc" && mount -t sysfs sysfs "$root/sys" &&
      mount --rbind /dev "$root/dev" && exec chroot "$root" "$@"' \
    sh "$root" /usr/bin/env -i "${env_vars[@]}" /bin/bash -c "cd /work/labrun && $command" </dev/null >"$log" 2>&1
  status=$?
  set -e
  local seconds=$(($(clock) - began))
  results[$index]="$status $seconds"

  echo "---- [$index] $command: exit status $status, $(minutes "$seconds"); last $tail_lines lines:"
  tail -n "$tail_lines" "$log" | sed 's/^/    /'
  if [[ $with_data -eq 0 ]]; then
    local data_files
    # No data/ at all is the good case (find fails there, and pipefail would end the script).
    data_files=0
    if [[ -d "$root/work/labrun/data" ]]; then data_files=$(find "$root/work/labrun/data" -type f | wc -l); fi
    results[$index]+=" $data_files"
    grep -q 'Traceback' "$log" && results[$index]+=" traceback" || true
    echo "---- [$index] files left in data/: $data_files"
  fi
  if [[ $keep -eq 0 ]]; then remove_root "$root"; fi
}

indices=(1 2)
[[ -z "$only" ]] || indices=("$only")
for index in "${indices[@]}"; do run_command "$index"; done

# The report.
echo
echo "fresh-machine check of $revision on Debian $(cat "$base/etc/debian_version") ($SUITE minbase), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p')"
echo "base root: $(minutes "$base_seconds"); data mirror: $([[ $with_data -eq 1 ]] && echo "$data_dir" || echo "absent (--without-data)")"
failed=0
for index in "${indices[@]}"; do
  read -r status seconds data_files traceback <<<"${results[$index]}"
  verdict=PASS
  if [[ $with_data -eq 1 ]]; then
    [[ $status -eq 0 ]] || verdict=FAIL
  else
    # Without the mirror the command must fail, cleanly: a non-zero exit, no traceback, no data file.
    if [[ $status -eq 0 || -n "${traceback:-}" || ${data_files:-0} -ne 0 ]]; then verdict=FAIL; fi
  fi
  [[ $verdict == PASS ]] || failed=1
  printf '  %s  [%d] %-22s exit %-3s %s\n' "$verdict" "$index" "${commands[$((index - 1))]}" "$status" "$(minutes "$seconds")"
done
echo "logs: $logs"
exit "$failed"
