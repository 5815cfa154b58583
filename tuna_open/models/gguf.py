"""GGUF → a plain fp32 Hugging Face directory, converted once per file content and cached.

Why convert instead of loading the GGUF every time: transformers dequantises GGUF weights on load and converts the
GGUF tokenizer to a fast tokenizer, which together take about a minute for a 135M model on two cores, and every
stage (sampling, each trainer, scorers, vLLM) loads its model again. A model loaded from GGUF is also flagged as
quantized, so ``save_pretrained`` refuses it and trainers cannot save their results: the conversion drops the
quantization config and re-creates the model from its config, which gives an ordinary fp32 checkpoint that every
consumer (TRL, PEFT, vLLM) loads like any hub model.

The directory is keyed by the GGUF's sha256, written under a temporary name and renamed when complete, and guarded by
a file lock, so concurrent or interrupted conversions never leave a half-written model behind.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import sys
import time
from pathlib import Path

from tuna_open.errors import require_package

GGUF_REQUIREMENT = "gguf>=0.10,<0.20"
"""transformers' GGUF loader needs gguf>=0.10; 0.19 is the measured version (pyproject.toml pins the same range)."""

DONE = "conversion.json"
"""Written last: a directory without it is not a finished conversion."""


def convert_gguf(gguf: Path, sha256: str, cache: Path) -> Path:
    """The HF directory converted from ``gguf`` (whose content hash is ``sha256``), converting on first use."""
    out = cache / "hf" / sha256[:16]
    if (out / DONE).is_file():
        return out
    require_package("gguf", f"converting {gguf.name}", f"pip install '{GGUF_REQUIREMENT}'")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the finished directory
        if (out / DONE).is_file():
            return out
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted conversion
        print(f"model: converting {gguf.name} to a Hugging Face checkpoint in {out} (once; about a minute)",
              file=sys.stderr, flush=True)
        started = time.monotonic()
        _convert(gguf, tmp)
        (tmp / DONE).write_text(json.dumps({"gguf": str(gguf), "sha256": sha256,
                                            "seconds": round(time.monotonic() - started, 1)}, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return out


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    # GGUF tokenizers come without a length limit; the model's context is the one that truncation must respect.
    context = getattr(config, "max_position_embeddings", None)
    if context and (tokenizer.model_max_length is None or tokenizer.model_max_length > context):
        tokenizer.model_max_length = context
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
