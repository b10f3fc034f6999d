#!/usr/bin/env python3
"""Times BERT masked-language-model training steps in PyTorch with Hugging Face transformers:
the peer that bench/bert.sh compares `lab_bench_step experiments/bert_mlm.ini` against.

The model is transformers' BertForMaskedLM with experiments/bert/bert_small.ini's shape (4 layers,
256 wide, 4 heads, FFN 1024, the bert-base-uncased vocabulary of 30,522, dropout 0.1, its default
attention through F.scaled_dot_product_attention, attn_implementation="sdpa"; --attention eager
writes it out). Each sequence has round(0.15 * (T - 2)) masked positions, as labrun's
mask_count = fixed. The optimiser is AdamW (lr 1e-3, betas (0.9, 0.98), weight decay 0.01) with
gradient-norm clipping at 1.0.

One step = forward + loss + backward + clip + optimiser step + zero_grad. --masked-rows-only
computes the prediction head on the masked rows only (what labrun's task/mlm does) instead of
BertForMaskedLM's logits over all B * T positions. --precision bf16 runs forward and loss under
torch.autocast(dtype=torch.bfloat16) (f32 parameters, gradients and optimiser); --compile wraps
forward and loss in torch.compile (at least one untimed step compiles it) and, if compiling fails,
says so on stderr and times eager mode (the JSON then has a compile_error field).
Prints one JSON line on stdout.
"""

import argparse
import json
import sys
import time

import torch

from bench_args import positive_int, non_negative_int  # bench/, beside this script


def run_benchmark(args, per_sequence, use_compile):
    """Builds model and optimiser, runs the warm-up and the timed steps; returns
    (seconds, last loss, warm-up steps run, attention implementation)."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(args.seed)
    config = BertConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=args.intermediate,
                        max_position_embeddings=max(512, args.seq_len), hidden_dropout_prob=0.1,
                        attention_probs_dropout_prob=0.1, attn_implementation=args.attention)
    model = BertForMaskedLM(config)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.98))
    B, T = args.batch, args.seq_len
    generator = torch.Generator().manual_seed(args.seed)

    def batch():
        ids = torch.randint(1000, args.vocab, (B, T), generator=generator)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
        labels = torch.full((B, T), -100, dtype=torch.long)
        for b in range(B):
            chosen = 1 + torch.randperm(T - 2, generator=generator)[:per_sequence]
            labels[b, chosen] = ids[b, chosen]
            ids[b, chosen] = 103  # [MASK]
        # The masked rows of the flattened (B * T) batch as indices: B * per_sequence of them in every
        # batch, so the shapes never change and torch.compile sees no data-dependent size.
        rows = (labels.view(-1) != -100).nonzero().squeeze(1)  # (B * per_sequence)
        return ids, labels, rows

    def forward_loss(ids, labels, rows):
        if args.masked_rows_only:
            hidden = model.bert(input_ids=ids).last_hidden_state  # (B, T, C)
            logits = model.cls(hidden.reshape(B * T, -1).index_select(0, rows))  # (B * per_sequence, V)
            return torch.nn.functional.cross_entropy(logits, labels.view(-1).index_select(0, rows))
        return model(input_ids=ids, labels=labels).loss

    step_forward_loss = torch.compile(forward_loss) if use_compile else forward_loss
    # nanoGPT's mixed precision: autocast around forward and loss only.
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step(ids, labels, rows):
        with autocast:
            loss = step_forward_loss(ids, labels, rows)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    # torch.compile compiles on the first call: that step must not be timed.
    warmup = max(args.warmup, 1) if use_compile else args.warmup
    batches = [batch() for _ in range(warmup + args.steps)]
    for i in range(warmup):
        step(*batches[i])
    t0 = time.perf_counter()
    for i in range(warmup, warmup + args.steps):
        loss = step(*batches[i])
    seconds = time.perf_counter() - t0
    return seconds, loss, warmup, model.config._attn_implementation


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=positive_int, default=4)
    ap.add_argument("--hidden", type=positive_int, default=256)
    ap.add_argument("--heads", type=positive_int, default=4)
    ap.add_argument("--intermediate", type=positive_int, default=1024)
    ap.add_argument("--vocab", type=positive_int, default=30522)
    ap.add_argument("--seq-len", type=positive_int, default=128)
    ap.add_argument("--batch", type=positive_int, default=32)
    ap.add_argument("--mask-prob", type=float, default=0.15)
    ap.add_argument("--steps", type=positive_int, default=5)
    ap.add_argument("--warmup", type=non_negative_int, default=3)
    ap.add_argument("--threads", type=positive_int, default=2)
    ap.add_argument("--masked-rows-only", action="store_true",
                    help="run the prediction head on the masked rows only (as labrun's task/mlm)")
    ap.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa",
                    help="transformers' attn_implementation: sdpa (F.scaled_dot_product_attention, the "
                         "default) or eager (matmul + softmax written out, for reference)")
    ap.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                    help="bf16: forward and loss under torch.autocast(dtype=torch.bfloat16)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile forward and loss; falls back to eager with a message if compiling fails")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.seq_len < 3:
        ap.error(f"--seq-len {args.seq_len}: needs >= 3 ([CLS], a token, [SEP])")
    if args.hidden % args.heads != 0:
        ap.error(f"--hidden {args.hidden} is not divisible by --heads {args.heads}; "
                 "pick a width that is a multiple of the head count")
    if not 0.0 < args.mask_prob < 1.0:
        ap.error(f"--mask-prob {args.mask_prob} must be in (0, 1)")

    import transformers

    torch.set_num_threads(args.threads)
    per_sequence = max(1, round(args.mask_prob * (args.seq_len - 2)))
    impl, compile_error = "pytorch-compile" if args.compile else "pytorch-eager", None
    if args.compile:
        try:
            seconds, loss, warmup, attn_implementation = run_benchmark(args, per_sequence, use_compile=True)
        except Exception as error:  # torch.compile raises many types (backend, C++ toolchain)
            compile_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            print(f"torch_bert_step.py: torch.compile failed ({compile_error}); timing eager mode instead",
                  file=sys.stderr)
            impl = "pytorch-eager"
    if impl == "pytorch-eager":
        seconds, loss, warmup, attn_implementation = run_benchmark(args, per_sequence, use_compile=False)
    B, T = args.batch, args.seq_len
    result = {
        "impl": impl + ("-masked-rows" if args.masked_rows_only else ""),
        "config": {"layers": args.layers, "hidden": args.hidden, "heads": args.heads,
                   "intermediate": args.intermediate, "vocab": args.vocab, "seq_len": T, "batch": B,
                   "masked_per_sequence": per_sequence, "precision": args.precision},
        "compile": impl == "pytorch-compile", "precision": args.precision,
        "masked_rows_only": args.masked_rows_only,
        "ms_per_step": 1000 * seconds / args.steps, "tokens_per_s": B * T * args.steps / seconds,
        "threads": torch.get_num_threads(), "steps": args.steps, "warmup": warmup, "loss": loss,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "attn_implementation": attn_implementation}
    if compile_error is not None:
        result["compile_error"] = compile_error
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
