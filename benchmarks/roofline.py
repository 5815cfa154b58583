"""The machine's measured roof, for every benchmark JSON: dense GEMM GFLOP/s in fp32 and bf16, same process, same
threads, measured at the start of the benchmark run (on a shared machine the roof moves with the load, so a path's
fraction is only meaningful against a roof measured beside it).

A path's **fraction of the roof** is its model FLOP/s over the faster of the two GEMM rates, so a path that leaves
the processor's bf16 units idle shows it: 2 x parameters per token for a forward (sampling, scoring), 6 x for a
training step (forward and backward). Attention's FLOPs and the output head's share beyond the parameter count are
left out, as in the usual MFU accounting, so the fraction is a lower bound on the work done.

    python benchmarks/roofline.py          # the roof of this machine now, as JSON
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch

FORWARD_FLOPS_PER_PARAM = 2
TRAIN_FLOPS_PER_PARAM = 6


def gemm_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 5, device: str | None = None) -> float:
    """Median GFLOP/s of a ``size`` x ``size`` matrix product in ``dtype`` (one untimed warm-up first)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    rates = []
    for i in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            rates.append(2 * size ** 3 / (time.perf_counter() - start) / 1e9)
    return round(statistics.median(rates), 1)


def measure(size: int | None = None) -> dict[str, Any]:
    """The roof now: fp32 and bf16 GEMM GFLOP/s on this process's device and threads."""
    size = size or (8192 if torch.cuda.is_available() else 1024)
    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(), "gemm_size": size,
            "gemm_gflops_fp32": gemm_gflops(torch.float32, size),
            "gemm_gflops_bf16": gemm_gflops(torch.bfloat16, size)}


def fraction(parameters: int, tokens_per_s: float, roof: dict[str, Any], flops_per_param: int) -> dict[str, float]:
    """A path's model GFLOP/s and its fraction of the faster GEMM rate of ``roof``."""
    gflops = flops_per_param * parameters * tokens_per_s / 1e9
    peak = max(roof["gemm_gflops_fp32"], roof["gemm_gflops_bf16"])
    return {"model_gflops_per_s": round(gflops, 2), "fraction_of_roof": round(gflops / peak, 4)}


def parameter_count(model: str) -> int:
    """Parameters of a model directory's architecture (built on the meta device: no weights are read)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model))
    return sum(p.numel() for p in net.parameters())


if __name__ == "__main__":
    print(json.dumps(measure(), indent=1))
