#!/usr/bin/env bash
# tools/get_data.sh is all or nothing, and says which file it could not fetch and how to provide it.
# The mirror is the project's own data/ (tools/test.sh fills it before the build); downloads go to
# LAB_DATA_BASE_URL=file:///<a missing folder>, so no case here reaches the network.
# Usage: test_get_data.sh SOURCE_DIR
set -uo pipefail

source_dir=${1:?usage: test_get_data.sh SOURCE_DIR}
get_data="$source_dir/tools/get_data.sh"
mirror="$source_dir/data"
if [[ ! -f "$mirror/tinyshakespeare/input.txt" ]]; then
  echo "skipped: $mirror holds no data; run tools/get_data.sh --from ../shared/data first"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf -- "$scratch"' EXIT
export LAB_DATA_BASE_URL="file://$scratch/no-such-server"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
files_in() { find "$1" -type f 2>/dev/null | wc -l; }

# A mirror with every dataset file, as copies we may break.
mkdir -p "$scratch/mirror"
count=$("$get_data" --list | wc -l)
"$get_data" --list | while read -r _ rel_path _; do
  mkdir -p "$scratch/mirror/$(dirname "$rel_path")"
  cp "$mirror/$rel_path" "$scratch/mirror/$rel_path"
done

# 1. A file missing from the mirror, not downloadable: exit 1, the file named with the reason and
#    the fix, and no destination folder left behind.
rm "$scratch/mirror/sst2/dev.tsv"
"$get_data" --from "$scratch/mirror" --dest "$scratch/dest1" >"$scratch/out1" 2>&1
status=$?
[[ $status -eq 1 ]] || fail "missing file: exit status $status, expected 1"
grep -q "could not fetch 1 of $count files" "$scratch/out1" || fail "missing file: no 'could not fetch 1 of $count files'"
grep -q "^  sst2/dev.tsv: download from file://.* failed: " "$scratch/out1" || fail "missing file: sst2/dev.tsv is not named with its reason"
grep -q -- "--from DIR" "$scratch/out1" || fail "missing file: the hint does not say how to provide it (--from DIR)"
grep -q "Traceback" "$scratch/out1" && fail "missing file: a traceback was printed"
[[ ! -e "$scratch/dest1" ]] || fail "missing file: $scratch/dest1 was left behind with $(files_in "$scratch/dest1") files"

# 2. An existing destination keeps what it had, and gains nothing.
mkdir -p "$scratch/dest2/tinyshakespeare"
cp "$mirror/tinyshakespeare/input.txt" "$scratch/dest2/tinyshakespeare/input.txt"
echo "mine" >"$scratch/dest2/notes.txt"
"$get_data" --from "$scratch/mirror" --dest "$scratch/dest2" >"$scratch/out2" 2>&1
status=$?
[[ $status -eq 1 ]] || fail "existing destination: exit status $status, expected 1"
[[ $(files_in "$scratch/dest2") -eq 2 ]] ||
  fail "existing destination: $(files_in "$scratch/dest2") files afterwards, expected the 2 it had: $(find "$scratch/dest2" -type f)"
cmp -s "$mirror/tinyshakespeare/input.txt" "$scratch/dest2/tinyshakespeare/input.txt" || fail "existing destination: input.txt changed"

# 3. A corrupt mirror file is named with both hashes, and nothing is written.
cp "$mirror/sst2/dev.tsv" "$scratch/mirror/sst2/dev.tsv"
echo "extra line" >>"$scratch/mirror/gpt2/vocab.bpe"
"$get_data" --from "$scratch/mirror" --dest "$scratch/dest3" >"$scratch/out3" 2>&1
status=$?
[[ $status -eq 1 ]] || fail "corrupt mirror: exit status $status, expected 1"
grep -q "^  gpt2/vocab.bpe: the mirror's copy .* has sha256 [0-9a-f]\{64\}, expected [0-9a-f]\{64\}" "$scratch/out3" ||
  fail "corrupt mirror: gpt2/vocab.bpe is not named with its hashes"
[[ ! -e "$scratch/dest3" ]] || fail "corrupt mirror: $scratch/dest3 was left behind"

# 4. A whole mirror: every file in place, verified, and a second run copies nothing.
cp "$mirror/gpt2/vocab.bpe" "$scratch/mirror/gpt2/vocab.bpe"
"$get_data" --from "$scratch/mirror" --dest "$scratch/dest4" >"$scratch/out4" 2>&1
status=$?
[[ $status -eq 0 ]] || fail "whole mirror: exit status $status, expected 0: $(cat "$scratch/out4")"
[[ $(files_in "$scratch/dest4") -eq $count ]] || fail "whole mirror: $(files_in "$scratch/dest4") files, expected $count"
find "$scratch/dest4" -name '.get_data.*' | grep -q . && fail "whole mirror: the staging folder was left behind"
"$get_data" --from "$scratch/mirror" --dest "$scratch/dest4" >"$scratch/out5" 2>&1
grep -q "($count already present, 0 copied, 0 downloaded)" "$scratch/out5" || fail "second run: $(tail -1 "$scratch/out5")"

if [[ $failures -gt 0 ]]; then
  for out in "$scratch"/out*; do echo "---- $(basename "$out")"; cat "$out"; done
  echo "$failures of the get_data.sh checks failed"
  exit 1
fi
echo "get_data.sh: all-or-nothing, named failures and hints hold ($count files)"
