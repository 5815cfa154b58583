"""Shared-prefix label log-probabilities: each prompt's tokens run through the model once, not once per candidate.

``tuna_loss`` feeds every candidate with its whole prompt, so a prompt of P tokens with N candidates costs N·P
token positions through every layer, forward and backward. Here each group of candidates (one prompt) runs its
common prefix once with ``use_cache=True``; the prefix's key/value states, repeated N times in the batch dimension,
serve as the ``cache`` of one batched forward over the candidates' continuations, right-padded only to the
group's longest candidate. The cache is not detached, so the ranking and MLE gradients reach the prefix forward
exactly as they reach the prompt positions of the per-candidate path; the loss and gradients are the same.

The prefix stops before the last prompt token: that token is fed again at the head of each continuation, so the
log-probability of a candidate's first token comes from the continuation forward like every other one, and the
same output head (``_ChunkedLinearLogProbs`` or the model's own logits) serves all label tokens.

Models that cannot take it (no cache returned, e.g. under gradient checkpointing, which turns caching off) raise
``PrefixSharingUnavailable``; ``PrefixSharing`` then falls back to the per-candidate path and says why once.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from rankers.llm.prefix_cache import shared_or_plain
from tuna_open.train.losses import (
    TunaLossOutput,
    _accumulate_dtype,
    _ChunkedLinearLogProbs,
    _plain_output_head,
    tuna_loss,
)

log = logging.getLogger(__name__)


class PrefixSharingUnavailable(RuntimeError):
    """The model returned no key/value cache for the prefix forward."""


def shared_prefix_logprobs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, predicts: torch.Tensor,
                           targets: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """log p(target) at every ``predicts`` position of every row, flattened row-major ([T] float32), as
    ``losses._label_token_logprobs`` returns it, computing each group's shared prefix once.

    ``ids``, ``mask`` [R, W] are right-padded rows, ``predicts`` [R, W-1] marks positions whose next token is a
    label, ``groups`` [R] is each row's prompt index (non-decreasing: rows of one prompt are consecutive).
    """
    head = _plain_output_head(model)
    parts: list[torch.Tensor] = []
    for group in torch.unique_consecutive(groups).tolist():
        sel = (groups == group).nonzero().squeeze(-1)
        g_ids, g_mask, g_pred = ids[sel], mask[sel], predicts[sel]
        end = int(g_mask.any(0).nonzero().max()) + 1
        prefix = _prefix_length(g_ids, g_mask, g_pred)
        cont_pred = g_pred[:, prefix:end - 1]
        kwargs: dict[str, Any] = {}
        if prefix:
            kwargs = {"cache": _prefix_cache(model, g_ids[:1, :prefix], len(sel)),
                      "position_ids": torch.arange(prefix, end, device=ids.device).expand(len(sel), -1)}
        keep = torch.zeros((len(sel), end - prefix), dtype=torch.bool, device=ids.device)
        if head is None:
            keep[:, :-1] = cont_pred
            out = model(input_ids=g_ids[:, prefix:end], attention_mask=g_mask[:, :end], logits_to_keep=keep,
                        use_cache=bool(prefix), **kwargs)
            parts.append(out.logits.to(_accumulate_dtype(out.logits.dtype)))
        else:
            out = model(input_ids=g_ids[:, prefix:end], attention_mask=g_mask[:, :end], logits_to_keep=keep,
                        output_hidden_states=-1, use_cache=bool(prefix), **kwargs)
            parts.append(out.hidden_states[-1][:, :-1][cont_pred])
    if head is None:
        logits = torch.cat(parts)
        return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return _ChunkedLinearLogProbs.apply(torch.cat(parts), head.weight, head.bias, targets)


def _prefix_length(ids: torch.Tensor, mask: torch.Tensor, predicts: torch.Tensor) -> int:
    """Leading tokens every row of the group shares and attends to, up to (not including) the first position
    that predicts a label: that one is the continuation's first input."""
    first = int(predicts.any(0).nonzero().min())
    shared = (ids[:, :first] == ids[:1, :first]).all(0) & mask[:, :first].bool().all(0)
    return first if bool(shared.all()) else int((~shared).nonzero().min())


def _prefix_cache(model: nn.Module, prefix_ids: torch.Tensor, copies: int) -> Any:
    """The prefix's key/value cache (with its autograd graph), repeated ``copies`` times in the batch dimension."""
    nothing = torch.zeros_like(prefix_ids, dtype=torch.bool)  # the head runs on no position of the prefix
    out = model(input_ids=prefix_ids, attention_mask=torch.ones_like(prefix_ids), logits_to_keep=nothing,
                use_cache=True)
    cache = getattr(out, "cache", None)
    # Under gradient checkpointing the layers skip the cache: the model returns an empty one.
    if not hasattr(cache, "batch_repeat_interleave") or cache.get_seq_length() != prefix_ids.shape[1]:
        raise PrefixSharingUnavailable(f"{type(model).__name__} returned no filled, expandable key/value cache "
                                       "(gradient checkpointing turns caching off)")
    cache.batch_repeat_interleave(copies)
    return cache


def shared_prefix_loss(model: nn.Module, *args: Any, **kwargs: Any) -> TunaLossOutput:
    """``tuna_loss`` (same arguments) with each prompt's common prefix computed once."""
    return tuna_loss(model, *args, label_logprobs=shared_prefix_logprobs, **kwargs)


class PrefixSharing:
    """``tuna_loss`` with the shared-prefix path while it works, else the per-candidate path (same result).

    ``reason`` (when not None) disables it from the start, e.g. sharded weights, which only DeepSpeed's or FSDP's
    engine may gather, in one forward per step. The first failure of the shared path also disables it for the
    rest of training; each is logged once, so a run's log says which path it took.
    """

    def __init__(self, reason: str | None = None) -> None:
        self.shared_prefix = reason is None
        if reason is not None:
            log.warning("Tuna step without prefix sharing: %s", reason)

    def __call__(self, model: nn.Module, *args: Any, **kwargs: Any) -> TunaLossOutput:
        return shared_or_plain(self, log, "Tuna step", lambda: shared_prefix_loss(model, *args, **kwargs),
                               lambda: tuna_loss(model, *args, **kwargs))
