"""Loading transformers models for the in-process rankers (likelihood scorer, reward model) and the samplers.

One place for the device/dtype/pad-token conventions, so every component that runs a local model (the two
ranker backends, ``tuna_open.generate.hf_sampler``, the Tuna trainer's padding) resolves them identically. torch and
transformers are imported inside the functions: ``rankers`` stays importable without them.
"""

from __future__ import annotations

from typing import Any


def resolve_device(device: str) -> str:
    """``auto`` picks the first GPU when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str) -> Any:
    """``auto`` keeps the checkpoint's dtype; otherwise a torch dtype name (``bfloat16``, ``float32``...)."""
    if dtype == "auto":
        return "auto"
    import torch

    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (use auto, float32, float16 or bfloat16)")
    return value


def load_tokenizer(path: str) -> Any:
    """A tokenizer guaranteed to have a pad token (EOS stands in, as TRL does) for right-padded batches."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def release_model(holder: Any) -> None:
    """Drop ``holder.model`` and give its accelerator memory back now (the ``close`` of in-process models).

    ``empty_cache`` matters: without it PyTorch keeps the freed blocks cached and the next stage's model (or a
    vLLM engine sizing its KV cache by free memory) sees the GPU as still full.
    """
    import gc

    import torch

    holder.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) tensors of right-padded rows; positions of real tokens are unchanged."""
    return _padded(rows, pad_id, left=False)


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) tensors of left-padded rows: every row's last token is in the last column (a batch
    of prompts whose last position's output and key/value cache are wanted); the caller passes the positions of
    ``left_pad_positions``."""
    return _padded(rows, pad_id, left=True)


def left_pad_positions(mask: Any) -> Any:
    """Position ids of left-padded rows, counted from each row's first real token (padding gets 0): what the rows
    would have unpadded, so a row's outputs do not depend on how long its batch's other rows are."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _padded(rows: list[list[int]], pad_id: int, left: bool) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask
