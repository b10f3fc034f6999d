#!/usr/bin/env python3
"""Times BERT masked-language-model training steps in PyTorch with Hugging Face transformers:
the peer that bench/bert.sh compares `lab_bench_step experiments/bert_mlm.ini` against.

The model is transformers' BertForMaskedLM with experiments/bert/bert_small.ini's shape (4 layers,
256 wide, 4 heads, FFN 1024, the bert-base-uncased vocabulary of 30,522, dropout 0.1, its default
attention implementation). Each sequence has round(0.15 * (T - 2)) masked positions, as labrun's
mask_count = fixed. The optimiser is AdamW (lr 1e-3, betas (0.9, 0.98), weight decay 0.01) with
gradient-norm clipping at 1.0.

One step = forward + loss + backward + clip + optimiser step + zero_grad. --masked-rows-only
computes the prediction head on the masked rows only (what labrun's task/mlm does) instead of
BertForMaskedLM's logits over all B * T positions. Prints one JSON line on stdout.
"""

import argparse
import json
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mask-prob", type=float, default=0.15)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--masked-rows-only", action="store_true",
                    help="run the prediction head on the masked rows only (as labrun's task/mlm)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if min(args.steps, args.batch, args.seq_len) < 1 or args.seq_len < 3:
        ap.error("--steps and --batch must be >= 1 and --seq-len >= 3")

    import transformers
    from transformers import BertConfig, BertForMaskedLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = BertConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=args.intermediate,
                        max_position_embeddings=512, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = BertForMaskedLM(config)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.98))
    B, T = args.batch, args.seq_len
    per_sequence = max(1, round(args.mask_prob * (T - 2)))
    generator = torch.Generator().manual_seed(args.seed)

    def batch():
        ids = torch.randint(1000, args.vocab, (B, T), generator=generator)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
        labels = torch.full((B, T), -100, dtype=torch.long)
        for b in range(B):
            chosen = 1 + torch.randperm(T - 2, generator=generator)[:per_sequence]
            labels[b, chosen] = ids[b, chosen]
            ids[b, chosen] = 103  # [MASK]
        return ids, labels

    def step(ids, labels):
        if args.masked_rows_only:
            hidden = model.bert(input_ids=ids).last_hidden_state
            rows = labels.view(-1) != -100
            logits = model.cls(hidden.reshape(B * T, -1)[rows])
            loss = torch.nn.functional.cross_entropy(logits, labels.view(-1)[rows])
        else:
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    batches = [batch() for _ in range(args.warmup + args.steps)]
    for i in range(args.warmup):
        step(*batches[i])
    t0 = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        loss = step(*batches[i])
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "impl": "pytorch-eager" + ("-masked-rows" if args.masked_rows_only else ""),
        "config": {"layers": args.layers, "hidden": args.hidden, "heads": args.heads, "vocab": args.vocab,
                   "seq_len": T, "batch": B, "masked_per_sequence": per_sequence},
        "ms_per_step": 1000 * seconds / args.steps, "tokens_per_s": B * T * args.steps / seconds,
        "threads": args.threads, "steps": args.steps, "loss": loss, "torch": torch.__version__,
        "transformers": transformers.__version__, "attn_implementation": model.config._attn_implementation}))


if __name__ == "__main__":
    main()
