#!/usr/bin/env python3
"""Times full training steps of a nanoGPT model in PyTorch: the peer that bench/run.sh compares
build/bin/lab_bench_gpt against.

The model follows nanoGPT's model.py (karpathy/nanoGPT): a pre-LN GPT with learned token and
position embeddings, causal multi-head self-attention, a 4x GELU MLP, LayerNorm with optional
bias, and an lm_head tied to the token embedding; dropout is 0. The optimiser is AdamW
(lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on 2-D parameters only, as nanoGPT's
configure_optimizers does) with gradient-norm clipping at 1.0.

One step = forward + cross-entropy + backward + clip + optimiser step + zero_grad on a batch of
random tokens. Warm-up steps are not timed. By default the script runs PyTorch's fastest attention
(F.scaled_dot_product_attention, its fused kernel; --attention explicit writes out matmul + masked
softmax as nanoGPT's fallback does). --precision bf16 runs forward and loss under
torch.autocast("cpu"/"cuda", dtype=torch.bfloat16), as nanoGPT's train.py does: matmuls and
attention in bf16, parameters, gradients and the optimiser in f32. --compile wraps the model in
torch.compile (with at least one untimed step, which compiles).

The script prints exactly one JSON line on stdout:
  {"impl": "pytorch-eager" | "pytorch-compile", "config": {..., "attention": ..., "precision": ...},
   "compile": true | false, "ms_per_step": ..., "tokens_per_s": ..., "model_flops_per_step": ...,
   "threads": ..., "torch": "<version>", ...}
Messages (e.g. a torch.compile failure) go to stderr.
"""

import argparse
import json
import math
import sys
import time

import torch

from bench_args import positive_int, non_negative_int  # bench/, beside this script
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch.nn.LayerNorm cannot drop only the bias)."""

    def __init__(self, width, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden, heads, seq_len, bias, use_sdpa):
        super().__init__()
        self.c_attn = nn.Linear(hidden, 3 * hidden, bias=bias)  # q, k, v projections in one matmul
        self.c_proj = nn.Linear(hidden, hidden, bias=bias)
        self.heads = heads
        self.hidden = hidden
        self.use_sdpa = use_sdpa
        # (1, 1, T, T) lower-triangular: position t may attend to positions <= t.
        causal_mask = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
        self.register_buffer("causal_mask", causal_mask.view(1, 1, seq_len, seq_len), persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        H = self.heads
        D = C // H
        q, k, v = self.c_attn(x).split(self.hidden, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=True)
        else:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))  # (B, H, T, T)
            scores = scores.masked_fill(~self.causal_mask[:, :, :T, :T], float("-inf"))
            probabilities = F.softmax(scores, dim=-1)  # (B, H, T, T)
            y = probabilities @ v  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, hidden, bias):
        super().__init__()
        self.c_fc = nn.Linear(hidden, 4 * hidden, bias=bias)
        self.gelu = nn.GELU()  # exact erf GELU, as nanoGPT
        self.c_proj = nn.Linear(4 * hidden, hidden, bias=bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, hidden, heads, seq_len, bias, use_sdpa):
        super().__init__()
        self.ln_1 = LayerNorm(hidden, bias)
        self.attn = CausalSelfAttention(hidden, heads, seq_len, bias, use_sdpa)
        self.ln_2 = LayerNorm(hidden, bias)
        self.mlp = MLP(hidden, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, layers, heads, hidden, seq_len, vocab, bias, use_sdpa):
        super().__init__()
        self.seq_len = seq_len
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, hidden),
            wpe=nn.Embedding(seq_len, hidden),
            h=nn.ModuleList([Block(hidden, heads, seq_len, bias, use_sdpa) for _ in range(layers)]),
            ln_f=LayerNorm(hidden, bias),
        ))
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        # Weight tying: the output projection is the token embedding (Press & Wolf 2017).
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections that feed the residual stream: 0.02 / sqrt(2 L).
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, ids, targets):
        B, T = ids.size()
        positions = torch.arange(0, T, dtype=torch.long, device=ids.device)  # (T)
        x = self.transformer.wte(ids) + self.transformer.wpe(positions)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def make_optimizer(model, device):
    # Decay matrices and embeddings (dim >= 2); never biases or LayerNorm gains (nanoGPT's rule).
    parameters = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in parameters if p.dim() >= 2]
    no_decay = [p for p in parameters if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), **extra)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Time nanoGPT training steps in PyTorch; prints one JSON line.",
        epilog="Defaults are the 'baby' configuration: 4 layers, 4 heads, 128 wide, context 64, batch 12.")
    parser.add_argument("--layers", type=positive_int, default=4, help="transformer blocks (L)")
    parser.add_argument("--heads", type=positive_int, default=4, help="attention heads (H)")
    parser.add_argument("--hidden", type=positive_int, default=128, help="model width (C)")
    parser.add_argument("--seq-len", type=positive_int, default=64, help="context length (T)")
    parser.add_argument("--batch", type=positive_int, default=12, help="sequences per step (B)")
    parser.add_argument("--vocab", type=positive_int, default=65, help="vocabulary size (V); 65 = tinyshakespeare chars")
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed steps before timing")
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="torch.set_num_threads; 0 keeps PyTorch's default")
    parser.add_argument("--bias", dest="bias", action="store_true", default=False,
                        help="biases in linear layers and LayerNorms (default: none, as nanoGPT and "
                             "experiments/shakespeare_char.ini)")
    parser.add_argument("--no-bias", dest="bias", action="store_false", help="no biases (the default)")
    parser.add_argument("--attention", choices=("sdpa", "explicit"), default="sdpa",
                        help="sdpa: F.scaled_dot_product_attention, PyTorch's fused kernel (the default); "
                             "explicit: matmul + masked softmax written out, for reference")
    parser.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                        help="bf16: forward and loss under torch.autocast(dtype=torch.bfloat16), as nanoGPT; "
                             "f32 parameters, gradients and optimiser either way")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (at least one untimed step compiles it); falls back to "
                             "eager with a message on stderr and a compile_error field if compiling fails")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the initialisation and the token batches")
    arguments = parser.parse_args(argv)
    if arguments.hidden % arguments.heads != 0:
        parser.error(f"--hidden {arguments.hidden} is not divisible by --heads {arguments.heads}; "
                     "pick a width that is a multiple of the head count")
    return arguments


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_benchmark(arguments, device, use_compile):
    """Builds model and optimiser, runs the warm-up and the timed steps; returns (seconds, last loss,
    warm-up steps run, parameters without the position embedding)."""
    torch.manual_seed(arguments.seed)
    model = GPT(arguments.layers, arguments.heads, arguments.hidden, arguments.seq_len,
                arguments.vocab, arguments.bias, arguments.attention == "sdpa").to(device)
    model.train()
    optimizer = make_optimizer(model, device)
    step_model = torch.compile(model) if use_compile else model

    # A few pre-drawn batches, cycled, so that random-number generation is not part of the timing.
    generator = torch.Generator().manual_seed(arguments.seed)
    batches = []
    for _ in range(4):
        tokens = torch.randint(0, arguments.vocab, (arguments.batch, arguments.seq_len + 1), generator=generator)
        # inputs = tokens[:, :-1], targets = tokens shifted by one: (B, T) each.
        batches.append((tokens[:, :-1].contiguous().to(device), tokens[:, 1:].contiguous().to(device)))

    # nanoGPT's mixed precision: autocast around forward and loss only; backward follows the dtypes
    # the forward recorded.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=arguments.precision == "bf16")

    def train_step(step):
        ids, targets = batches[step % len(batches)]
        with autocast:
            loss = step_model(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    # torch.compile compiles on the first call: that step must not be timed.
    warmup = max(arguments.warmup, 1) if use_compile else arguments.warmup
    for step in range(warmup):
        train_step(step)
    synchronize(device)
    start = time.perf_counter()
    loss = None
    for step in range(arguments.steps):
        loss = train_step(warmup + step)
    synchronize(device)
    seconds = time.perf_counter() - start
    # nanoGPT's get_num_params(non_embedding=True): parameters() lists the tied matrix once.
    n_params = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    return seconds, float(loss.item()), warmup, n_params


def main(argv):
    arguments = parse_arguments(argv)
    if arguments.threads > 0:
        torch.set_num_threads(arguments.threads)
    device = torch.device(arguments.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"torch_gpt_step.py: --device {arguments.device} asked for CUDA but torch.cuda.is_available() "
              "is False; hint: use --device cpu or a CUDA build of PyTorch", file=sys.stderr)
        return 2

    impl = "pytorch-compile" if arguments.compile else "pytorch-eager"
    compile_error = None
    if arguments.compile:
        try:
            seconds, last_loss, warmup, n_params = run_benchmark(arguments, device, use_compile=True)
        except Exception as error:  # torch.compile raises many types (backend, C++ toolchain, Triton)
            compile_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            print(f"torch_gpt_step.py: torch.compile failed ({compile_error}); "
                  "timing eager mode instead", file=sys.stderr)
            impl = "pytorch-eager"
    if impl == "pytorch-eager":
        seconds, last_loss, warmup, n_params = run_benchmark(arguments, device, use_compile=False)

    ms_per_step = 1000.0 * seconds / arguments.steps
    tokens_per_step = arguments.batch * arguments.seq_len
    # Model FLOPs as nanoGPT's estimate_mfu and lab_bench_gpt count them (PaLM appendix B): 6 N per
    # token for the matmuls forward and backward, plus 12 L C T per token for QK^T and PV.
    flops_per_token = 6 * n_params + 12 * arguments.layers * arguments.hidden * arguments.seq_len
    result = {
        "impl": impl,
        "config": {
            "layers": arguments.layers, "heads": arguments.heads, "hidden": arguments.hidden,
            "seq_len": arguments.seq_len, "batch": arguments.batch, "vocab": arguments.vocab,
            "bias": arguments.bias, "attention": arguments.attention, "precision": arguments.precision,
        },
        "compile": impl == "pytorch-compile",
        "ms_per_step": round(ms_per_step, 3),
        "tokens_per_s": round(tokens_per_step / (seconds / arguments.steps), 1),
        "params": n_params,
        "model_flops_per_step": flops_per_token * tokens_per_step,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "steps": arguments.steps,
        "warmup": warmup,
        "loss": round(last_loss, 4),
    }
    if compile_error is not None:
        result["compile_error"] = compile_error
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
