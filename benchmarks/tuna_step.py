"""One Tuna training step (forward + backward): ``tuna_open.train.losses.tuna_loss`` against the paper's implementation.

The reference is the loss of the paper's ``TunaTrainer.compute_loss`` (microsoft/LMOps, tuna/src/custom.py): one
forward with ``labels`` so the model computes its own LM loss, then ``log_softmax`` over the full vocabulary for
every candidate token, a gather, length-normalised scores and the k-summed margin ranking loss.

Both run on the same random-init Llama (32k vocabulary) and random token ids; the script asserts that the losses
and the gradients agree, then prints one JSON object with the time and peak-memory ratios (ours / reference).

Roofline (``roofline.py``): each path's model FLOP/s counts the step's useful work, 6 x parameters per position of
each prompt once and of every answer token (what a step that computes each prompt once must do), over its median
time, against the GEMM rates measured at the start of the run; a path that recomputes prompts shows it as a lower
fraction of the same roof.

Peak memory. On CUDA: ``torch.cuda.max_memory_allocated`` above the memory allocated before the step. On CPU torch
has no allocator statistics, so each variant runs in a fresh subprocess that measures the resident-set high-water
mark (``VmHWM``) of the measured step above the resident set before it: glibc's mmap threshold is pinned at 64 KiB
so every large tensor is its own mapping, returned to the OS when freed (the resident set then follows live tensor
memory instead of malloc's cache), and ``/proc/self/clear_refs`` resets the high-water mark after a warm-up step.

    python benchmarks/tuna_step.py                # CPU (or CUDA when available)
    python benchmarks/tuna_step.py --hidden-size 64 --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import roofline
import torch
import torch.nn.functional as F
from torch import nn

from tuna_open.train.losses import IGNORE_INDEX, tuna_loss
from tuna_open.train.shared_prefix import shared_prefix_loss

MARGIN, MLE_WEIGHT = 0.1, 1.0
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def build(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, Batch]:
    """The model and one batch [B, N, L] of random candidates (prompt tokens labelled -100); seeded.

    A prompt's candidates share its tokens, as ``encode_group`` makes them; with ``--answer-min`` each answer
    has a random length in [answer_min, seq_len - prompt_len] and is right-padded (ragged candidates)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    heads = max(1, args.hidden_size // 64)
    config = LlamaConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                         intermediate_size=4 * args.hidden_size, num_hidden_layers=args.layers,
                         num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=args.seq_len, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).to(device)
    shape = (args.batch, args.candidates, args.seq_len)
    input_ids = torch.randint(0, args.vocab_size, shape, device=device)
    input_ids[:, :, :args.prompt_len] = input_ids[:, :1, :args.prompt_len].clone()
    attention_mask = torch.ones_like(input_ids)
    if args.answer_min is not None:
        ends = args.prompt_len + torch.randint(args.answer_min, args.seq_len - args.prompt_len + 1, shape[:2])
        attention_mask = (torch.arange(args.seq_len) < ends[..., None]).long().to(device)
        input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    labels[..., :args.prompt_len] = IGNORE_INDEX
    return model, (input_ids, attention_mask, labels)


def reference_loss(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor) -> torch.Tensor:
    """The paper's loss, computed the paper's way (full-vocabulary log-softmax plus the model's own LM loss)."""
    bs, num_cand, seq_len = input_ids.shape
    output = model(input_ids=input_ids.view(bs * num_cand, seq_len),
                   attention_mask=attention_mask.view(bs * num_cand, seq_len),
                   labels=labels.view(bs * num_cand, seq_len))
    logits = output.logits.view(bs, num_cand, seq_len, -1)
    label_mask = labels.ne(IGNORE_INDEX)
    lprobs = F.log_softmax(logits, dim=-1)
    targets = labels.masked_fill(~label_mask, 0)
    lprobs = lprobs[:, :, :-1, :].gather(dim=-1, index=targets[:, :, 1:, None]).squeeze(-1)
    mask = label_mask[:, :, 1:].type_as(lprobs)
    scores = (lprobs * mask).sum(dim=-1) / mask.sum(dim=-1)
    loss = output.loss.new_zeros(())
    for i in range(1, num_cand):
        pos, neg = scores[:, :-i].reshape(-1), scores[:, i:].reshape(-1)
        loss = loss + nn.MarginRankingLoss(MARGIN * i)(pos, neg, torch.ones_like(pos))
    return MLE_WEIGHT * output.loss + loss


def ours_loss(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              labels: torch.Tensor) -> torch.Tensor:
    return tuna_loss(model, input_ids, attention_mask, labels, margin=MARGIN, mle_weight=MLE_WEIGHT).loss


def shared_loss(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
    return shared_prefix_loss(model, input_ids, attention_mask, labels, margin=MARGIN, mle_weight=MLE_WEIGHT).loss


VARIANTS: dict[str, Callable[..., torch.Tensor]] = {"ref": reference_loss, "ours": ours_loss, "shared": shared_loss}


def step(model: nn.Module, batch: Batch, variant: str) -> tuple[float, dict[str, torch.Tensor]]:
    """One forward + backward from zeroed gradients; returns the loss and the gradients."""
    model.zero_grad(set_to_none=True)
    loss = VARIANTS[variant](model, *batch)
    loss.backward()
    return float(loss.detach()), {n: p.grad for n, p in model.named_parameters()}


def timed_step(model: nn.Module, batch: Batch, variant: str, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(model, batch, variant)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cpu_peak_child(args: argparse.Namespace) -> None:
    """(Subprocess) peak resident memory of one step above the resident set before it, in bytes, on stdout."""
    model, batch = build(args, torch.device("cpu"))
    step(model, batch, args.measure_memory)  # warm-up: one-time allocations (thread pools, kernels, grads)
    model.zero_grad(set_to_none=True)
    gc.collect()
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    step(model, batch, args.measure_memory)
    print(json.dumps({"peak_bytes": (_rss_kib("VmHWM") - before) * 1024}))


def cpu_peak(args: argparse.Namespace, variant: str) -> int:
    argv = [sys.executable, __file__, "--measure-memory", variant]
    for key in ("hidden_size", "layers", "vocab_size", "batch", "candidates", "seq_len", "prompt_len", "threads",
                "answer_min"):
        if getattr(args, key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


def cuda_peak(model: nn.Module, batch: Batch, variant: str) -> int:
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step(model, batch, variant)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=4, help="prompts")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=160)
    parser.add_argument("--prompt-len", type=int, default=40)
    parser.add_argument("--answer-min", type=int, help="ragged answers of at least this many tokens")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant (after one warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--measure-memory", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure_memory:
        cpu_peak_child(args)
        return

    device = torch.device(args.device)
    roof = roofline.measure()
    model, batch = build(args, device)
    loss_ref, grads_ref = step(model, batch, "ref")
    grads_ref = {n: g.clone() for n, g in grads_ref.items()}
    grad_scale = max(float(g.abs().max()) for g in grads_ref.values())
    losses, grad_diffs = {"ref": loss_ref}, {}
    for variant in ("ours", "shared"):
        losses[variant], grads = step(model, batch, variant)
        torch.testing.assert_close(losses[variant], loss_ref, rtol=1e-5, atol=1e-5)
        grad_diffs[variant] = max(float((grads[n] - g).abs().max()) for n, g in grads_ref.items())
        assert grad_diffs[variant] <= 1e-4 * grad_scale, \
            f"{variant}: gradients differ: max |diff| {grad_diffs[variant]:.3g} (max |grad| {grad_scale:.3g})"

    # Interleaved so that load changes on a shared machine hit both variants alike; medians of the timed repeats.
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for repeat in range(args.repeats + 1):
        for variant in VARIANTS:
            seconds = timed_step(model, batch, variant, device)
            if repeat:
                times[variant].append(seconds)
    median = {v: statistics.median(t) for v, t in times.items()}
    if device.type == "cuda":
        peak = {v: cuda_peak(model, batch, v) for v in VARIANTS}
        device_name = torch.cuda.get_device_name(device)
    else:
        peak = {v: cpu_peak(args, v) for v in VARIANTS}
        device_name = f"cpu ({args.threads} threads)"
    tokens = int(batch[1].sum())
    useful = args.batch * args.prompt_len + int(batch[2].ne(IGNORE_INDEX).sum())
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({
        **{f"loss_{v}": loss for v, loss in losses.items()},
        **{f"max_grad_abs_diff_{v}": diff for v, diff in grad_diffs.items()},
        **{f"time_ratio_{v}": round(median[v] / median["ref"], 3) for v in ("ours", "shared")},
        **{f"peak_mem_ratio_{v}": round(peak[v] / peak["ref"], 3) for v in ("ours", "shared")},
        **{f"tokens_per_s_{v}": round(tokens / median[v], 1) for v in VARIANTS},
        **{f"seconds_{v}": [round(t, 3) for t in times[v]] for v in VARIANTS},
        **{f"peak_mib_{v}": round(peak[v] / 2**20, 1) for v in VARIANTS},
        **{f"roofline_{v}": roofline.fraction(parameters, useful / median[v], roof, roofline.TRAIN_FLOPS_PER_PARAM)
           for v in VARIANTS},
        "roofline": roof, "useful_positions": useful, "parameters": parameters,
        "device": device_name,
        "shape": {"prompts": args.batch, "candidates": args.candidates, "seq_len": args.seq_len,
                  "prompt_len": args.prompt_len, "answer_min": args.answer_min, "vocab": args.vocab_size,
                  "hidden": args.hidden_size, "layers": args.layers},
    }, indent=1))


if __name__ == "__main__":
    main()
