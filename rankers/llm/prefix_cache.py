"""Prompt once, candidates after: the forward passes of an in-process scorer that sees each prompt one time.

A rank request is one prompt with N candidates; fed as N full sequences, the prompt's P tokens go through every
layer N times. Here a batch of requests runs its prompts once (left-padded, so each row's last real token is in the
last column, with positions counted from each row's first real token and ``use_cache=True``); the key/value cache is
then expanded to one row per candidate (``batch_select_indices`` with repeated indices, so requests may have any
number of candidates) and one forward runs the candidates' tokens, right-padded, with the prompt rows' attention mask
in front of theirs and positions continuing after each prompt. Every real token sees the same context at the same
position as in the full sequence, so the outputs are those of the per-candidate path up to float rounding.

``tuna_open.train.shared_prefix`` does the same for the Tuna step (rankers cannot import it, and a scorer needs no
gradients and batches several prompts per forward). A model whose forward returns no expandable, filled cache
raises ``PrefixCacheUnavailable``; the scorers then take their per-candidate path (``shared_or_plain``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from rankers.llm.hf import left_pad, left_pad_positions, right_pad

T = TypeVar("T")


class PrefixCacheUnavailable(RuntimeError):
    """The model's prefix forward gave no key/value cache that can be expanded to the candidates' rows."""


@dataclass
class Prefixes:
    """The prefix forward of a batch of prompts: its output, its [B, P] left-padded mask, its key/value cache."""

    output: Any
    mask: Any
    cache: Any


def run_prefixes(model: Any, rows: Sequence[list[int]], pad_id: int, **kwargs: Any) -> Prefixes:
    """One forward over ``rows`` (each non-empty) left-padded, keeping the cache; ``kwargs`` go to the model
    (``logits_to_keep=1`` when only the last position's logits are wanted)."""
    import torch

    ids, mask = left_pad(list(rows), pad_id)
    positions = left_pad_positions(mask)
    device = model.device
    with torch.no_grad():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    use_cache=True, **kwargs)
    cache = getattr(out, "cache", None)
    if not hasattr(cache, "batch_select_indices") or cache.get_seq_length() != ids.shape[1]:
        raise PrefixCacheUnavailable(f"{type(model).__name__} returned no filled key/value cache that can be "
                                     f"expanded (got {type(cache).__name__})")
    return Prefixes(out, mask.to(device), cache)


def run_continuations(model: Any, prefixes: Prefixes, owners: Sequence[int], rows: Sequence[list[int]],
                      pad_id: int) -> Any:
    """The model's output over ``rows`` (each non-empty, right-padded), row ``r`` continuing prefix ``owners[r]``.

    Consumes ``prefixes.cache`` (expanded and appended to in place)."""
    import torch

    device = model.device
    index = torch.tensor(owners, dtype=torch.long, device=device)
    prefixes.cache.batch_select_indices(index)
    ids, mask = right_pad(list(rows), pad_id)
    mask = mask.to(device)
    positions = prefixes.mask.sum(-1)[index, None] + torch.arange(ids.shape[1], device=device)
    with torch.no_grad():
        return model(input_ids=ids.to(device), attention_mask=torch.cat([prefixes.mask[index], mask], dim=1),
                     position_ids=positions, cache=prefixes.cache, use_cache=True)


def pack(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive indices of ``sizes`` grouped so each group's total is at most ``budget`` (a size above it gets a
    group alone): a request's candidates stay in one forward, and a forward holds about ``budget`` sequences."""
    groups: list[list[int]] = []
    total = 0
    for i, size in enumerate(sizes):
        if not groups or total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += size
    return groups


def shared_or_plain(holder: Any, logger: logging.Logger, who: str, shared: Callable[[], T],
                    plain: Callable[[], T]) -> T:
    """``shared()`` while ``holder.shared_prefix`` is on, else ``plain()``: the per-candidate path, which computes the
    same values. The shared path's first failure turns it off for ``holder`` and is said once on ``logger``, so a
    model that cannot take it still scores, and the log says which path a run took."""
    if holder.shared_prefix:
        try:
            return shared()
        except Exception as error:  # noqa: BLE001 - any failure of the optional path falls back to the plain one
            holder.shared_prefix = False
            logger.warning("%s: scoring each candidate with its whole prompt; the shared-prefix forward failed "
                           "(%s: %s)", who, type(error).__name__, error)
    return plain()
