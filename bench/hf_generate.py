#!/usr/bin/env python3
"""Times Hugging Face transformers' generate (PyTorch, CPU, batch 1, greedy) on the GPT that
lab_bench_generate --save wrote, so that both sides run the very same weights and prompt.

The file holds labrun's gpt in GPT2Model names; transformers' GPT2 keeps its projections as
Conv1D ([in, out]), so c_attn, c_proj and c_fc weights are transposed on the way in. Prints one
JSON line like lab_bench_generate's (tokens/s is the median of --repeats generations after one
untimed warm-up).
"""
import argparse
import json
import statistics
import sys
import time


def load_model(path):
    import torch
    from safetensors import safe_open
    from transformers import GPT2Config, GPT2LMHeadModel

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = GPT2Config(
        vocab_size=int(meta["vocab"]), n_positions=int(meta["context"]), n_embd=int(meta["hidden"]),
        n_layer=int(meta["layers"]), n_head=int(meta["heads"]), activation_function="gelu_new"
        if meta["activation"] == "gelu_tanh" else "gelu", layer_norm_epsilon=float(meta["ln_eps"]),
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(config)
    state = {}
    for name, t in tensors.items():
        if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            t = t.t().contiguous()
        state["transformer." + name] = t
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        sys.exit(f"hf_generate.py: {path}: tensors transformers' GPT2 has no place for: {unexpected[:5]}")
    with torch.no_grad():
        for name in missing:  # lm_head is tied to wte; a bias-free labrun model has zero biases
            if name == "lm_head.weight":
                continue
            if not name.endswith(".bias"):
                sys.exit(f"hf_generate.py: {path} lacks {name}")
            model.get_parameter(name).zero_()
    model.eval()
    return model, json.loads(meta["prompt"]), meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="the .safetensors file of lab_bench_generate --save")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-cache-too", action="store_true", help="also time use_cache=False")
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    model, prompt, meta = load_model(args.weights)
    ids = torch.tensor([prompt], dtype=torch.long)

    def generate(n, use_cache):
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                              do_sample=False, use_cache=use_cache, pad_token_id=0)

    def timed(use_cache, repeats):
        with torch.inference_mode():
            generate(min(8, args.new_tokens), use_cache)
            seconds, out = [], None
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = generate(args.new_tokens, use_cache)
                seconds.append(time.perf_counter() - t0)
        return statistics.median(seconds), out[0, len(prompt):].tolist()

    cached_s, new_ids = timed(True, args.repeats)
    uncached_s = timed(False, 1)[0] if args.no_cache_too else 0.0
    print(json.dumps({
        "impl": "transformers-pytorch",
        "config": {k: int(meta[k]) for k in ("layers", "heads", "hidden", "context", "vocab")},
        "prompt_tokens": len(prompt), "new_tokens": len(new_ids), "seconds": cached_s,
        "tokens_per_s": len(new_ids) / cached_s,
        "tokens_per_s_no_cache": len(new_ids) / uncached_s if uncached_s else 0.0,
        "threads": args.threads, "repeats": args.repeats, "ids": new_ids,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "attn_implementation": model.config._attn_implementation}))


if __name__ == "__main__":
    main()
