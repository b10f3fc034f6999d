#!/usr/bin/env python3
"""Converts a Hugging Face model folder's PyTorch weights to model.safetensors.

labrun reads only safetensors (never pickles: a .bin file can run code when loaded). A folder that
ships pytorch_model.bin (or shards listed in pytorch_model.bin.index.json) is converted once:

    python3 tools/hf_to_safetensors.py DIR [--force]

Writes DIR/model.safetensors with every tensor of the state dict, names and dtypes unchanged;
refuses to overwrite an existing model.safetensors unless --force. Needs torch and safetensors
(pip install torch safetensors).
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile


def fail(message: str) -> int:
    print(f"hf_to_safetensors.py: error: {message}", file=sys.stderr)
    return 1


def weight_files(folder: pathlib.Path) -> list:
    """The .bin files holding the state dict: one file, or the shards of the index."""
    single = folder / "pytorch_model.bin"
    if single.is_file():
        return [single]
    index = folder / "pytorch_model.bin.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{index} is not a shard index with a 'weight_map' ({e})")
        return [folder / name for name in sorted(set(weight_map.values()))]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description="Converts DIR/pytorch_model.bin to DIR/model.safetensors.")
    parser.add_argument("folder", metavar="DIR", help="a Hugging Face model folder (config.json, pytorch_model.bin)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing DIR/model.safetensors")
    args = parser.parse_args()

    folder = pathlib.Path(args.folder)
    if not folder.is_dir():
        return fail(f"{folder} is not a folder; give the Hugging Face model folder that holds pytorch_model.bin")
    out = folder / "model.safetensors"
    if out.exists() and not args.force:
        return fail(f"{out} already exists; labrun reads it as it is (use --force to convert again and overwrite it)")
    try:
        sources = weight_files(folder)
    except ValueError as e:
        return fail(str(e))
    if not sources:
        return fail(f"{folder} has neither pytorch_model.bin nor pytorch_model.bin.index.json; nothing to convert")
    missing = [str(f) for f in sources if not f.is_file()]
    if missing:
        return fail(f"shard(s) listed in the index are missing: {', '.join(missing)}; download the complete folder")

    try:
        import torch
        from safetensors.torch import save_file
    except ImportError as e:
        return fail(f"{e.name} is not installed; run: python3 -m pip install torch safetensors")

    tensors = {}
    for source in sources:
        try:
            # weights_only: plain tensors only, no arbitrary code from the pickle.
            state = torch.load(str(source), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a damaged or foreign file
            return fail(f"cannot load {source} as a PyTorch state dict ({type(e).__name__}: {e})")
        if not isinstance(state, dict):
            return fail(f"{source} holds a {type(state).__name__}, not a state dict of named tensors")
        for name, value in state.items():
            if not isinstance(value, torch.Tensor):
                print(f"hf_to_safetensors.py: skipping '{name}' ({type(value).__name__}, not a tensor)", file=sys.stderr)
                continue
            if name in tensors:
                return fail(f"tensor '{name}' appears in more than one shard ({source}); the index is inconsistent")
            # Tied weights share storage, which safetensors refuses: each tensor gets its own copy.
            tensors[name] = value.detach().contiguous().clone()
    if not tensors:
        return fail(f"no tensors found in {', '.join(str(s) for s in sources)}")

    # Written under a temporary name in the same folder and renamed, so a failure never leaves a
    # truncated model.safetensors that labrun would try to read.
    fd, tmp = tempfile.mkstemp(prefix=".model.safetensors.", dir=str(folder))
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it a new file's mode
        os.replace(tmp, out)
    except Exception as e:
        os.unlink(tmp)
        return fail(f"could not write {out} ({type(e).__name__}: {e})")
    count = sum(t.numel() for t in tensors.values())
    print(f"hf_to_safetensors.py: wrote {out}: {len(tensors)} tensors, {count:,} values, from "
          f"{', '.join(s.name for s in sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
