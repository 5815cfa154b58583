"""Tuna training throughput on a real model: a few LoRA steps of ``train_tuna`` on the model's own ranked samples.

Why: ``benchmarks/tuna_step.py`` times one loss step on a random model and random ids; a user's question is how
many tokens/s the whole trainer (TRL/transformers ``Trainer``, PEFT LoRA, the Tuna loss, the collator) does on a
real model and real candidates. The candidates are SmolLM2-135M-Instruct's own samples from
``benchmarks/open_judge.py``'s JSON (``--candidates``), ordered best-first by the exact verifier's scores, each
prompt in the Alpaca template, as the ``train_tuna`` stage trains Tuna_c.

Reported: ``train_seconds`` (``trainer.train()`` only: not loading, not saving the merged model), steps, and
tokens/s counted three ways: every real token of every candidate sequence (prompt + response + EOS, what the
forward and backward pass over), the response tokens the loss scores, and the padded ``[N, L]`` tokens the
collator builds (L is the longest sequence of the micro-batch). The first step includes kernel warm-up; with
only a few steps that is part of the figure, and the JSON says how many. ``--lora-r 0`` trains every weight (as
``real_gpu.yaml`` does); then the JSON also gives model FLOP/s (6 x parameters x real tokens/s, the usual
approximation for a forward and backward pass, attention left out) and, on a GPU whose peak is known, MFU against
its dense bf16 peak.

    python benchmarks/tuna_training.py --steps 8
    python benchmarks/tuna_training.py --model smollm2-135m-instruct --candidates benchmarks/results/open_judge_cpu.json
    python benchmarks/tuna_training.py --lora-r 0 --batch-size 4 --steps 24 --bf16 --out tuna_training_gpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import roofline
import torch
from sampling import host, torch_device

from rankers.base import order_from_scores
from rankers.llm.templates import format_prompt
from tuna_open.models import is_model_ref, resolve_model
from tuna_open.train.settings import LoraSettings
from tuna_open.train.tuna_data import TunaExample, encode_group
from tuna_open.train.tuna_trainer import TunaTrainConfig, train_tuna

RESULTS = Path(__file__).parent / "results"

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' datasheets, by the name torch reports.
PEAK_BF16 = {"NVIDIA H100 80GB HBM3": 989.4e12, "NVIDIA H200": 989.4e12, "NVIDIA A100-SXM4-80GB": 312e12}


def ranked_examples(path: Path, count: int) -> list[TunaExample]:
    """``count`` requests of an ``open_judge.py`` result, candidates best-first by verifier score; when the file
    holds fewer, they are used again in order (a throughput figure needs steps, not new data)."""
    rows = json.loads(path.read_text())["requests"]
    if not rows:
        raise SystemExit(f"error: {path} has no requests")
    return [{"prompt": format_prompt(r["instruction"], r["input"]),
             "candidates": [r["candidates"][i] for i in order_from_scores(r["verifier_scores"])]}
            for r in (rows[i % len(rows)] for i in range(count))]


def token_counts(model: str, examples: list[TunaExample], max_length: int) -> dict[str, int]:
    """Real, response and padded tokens of the groups exactly as ``train_tuna`` encodes them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    real = response = padded = 0
    for example in examples:
        group = encode_group(tokenizer, example["prompt"], example["candidates"], max_length)
        real += sum(len(ids) for ids in group["input_ids"])
        response += sum(sum(label != -100 for label in labels) for labels in group["labels"])
        padded += len(group["input_ids"]) * max(len(ids) for ids in group["input_ids"])
    return {"real": real, "response": response, "padded": padded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="a directory or a model reference")
    parser.add_argument("--candidates", type=Path, default=RESULTS / "open_judge_cpu.json",
                        help="an open_judge.py result: the model's samples with verifier scores")
    parser.add_argument("--steps", type=int, default=8,
                        help="optimizer steps (--batch-size prompts with their candidates each)")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank; 0 trains every weight")
    parser.add_argument("--batch-size", type=int, default=1, help="prompts (with all their candidates) per step")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (a GPU's training mode)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS / "tuna_training_cpu.json")
    args = parser.parse_args()
    machine = host()
    torch.set_num_threads(args.threads)
    roof = roofline.measure()
    model = resolve_model(args.model) if is_model_ref(args.model) else args.model
    examples = ranked_examples(args.candidates, args.steps * args.batch_size)
    lora = LoraSettings(r=args.lora_r, alpha=2 * args.lora_r) if args.lora_r else None
    config = TunaTrainConfig(learning_rate=1e-4 if lora else 1e-5, per_device_train_batch_size=args.batch_size,
                             num_train_epochs=1, logging_steps=1, max_length=args.max_length, lora=lora,
                             bf16=args.bf16)
    with tempfile.TemporaryDirectory(prefix="bench-tuna-training-") as tmp:
        out = train_tuna(model, examples, config, str(Path(tmp) / "model"))
    seconds = out["train_seconds"]
    tokens = token_counts(model, examples, args.max_length)
    result = {
        "model": args.model,
        "candidates_from": str(args.candidates),
        "steps": len(out["history"]),
        "prompts": out["examples"],
        "candidates_per_prompt": [len(e["candidates"]) for e in examples],
        "train_seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / max(1, len(out["history"])), 3),
        "tokens": tokens,
        "tokens_per_s": {k: round(v / seconds, 1) for k, v in tokens.items()},
        "loss": [round(h["loss"], 4) for h in out["history"]],
        "settings": {"lora": lora.model_dump() if lora else None, "learning_rate": config.learning_rate,
                     "per_device_batch_size": args.batch_size, "bf16": args.bf16, "max_length": args.max_length,
                     "torch_threads": args.threads, "device": torch_device(), **machine},
    }
    result["roofline"] = roof
    if lora is None:  # LoRA's backward skips most weight gradients: 6 x parameters would overstate its work
        result.update(model_flops(model, tokens["real"] / seconds, roof))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def model_flops(model: str, tokens_per_s: float, roof: dict) -> dict[str, float | None]:
    """Model FLOP/s of full fine-tuning (6 x parameters per token): its fraction of the GEMM rate measured in
    this run, and MFU against the GPU's published dense bf16 peak."""
    params = roofline.parameter_count(model)
    flops = roofline.TRAIN_FLOPS_PER_PARAM * params * tokens_per_s
    peak = PEAK_BF16.get(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    return {"parameters": params, "model_tflops_per_s": round(flops / 1e12, 3),
            **roofline.fraction(params, tokens_per_s, roof, roofline.TRAIN_FLOPS_PER_PARAM),
            "mfu_vs_bf16_peak": round(flops / peak, 5) if peak else None}


if __name__ == "__main__":
    main()
