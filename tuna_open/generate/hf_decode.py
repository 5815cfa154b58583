"""The ``prefill_once`` decode loop: each prompt's forward runs once, then its key/value cache serves its n samples.

Why: ``generate(num_return_sequences=n)`` copies every prompt n times *before* the prefill (n times the prompt
work) and, for log-probabilities, keeps every step's raw logits ([rows, steps, vocab]) until the end. Here the
distinct prompts are prefilled once, the cache is repeated n times in the batch dimension, and each sampled
token's log-probability is added to a running sum as it is drawn.

The samples are the ones transformers' ``_sample`` draws (5.24), so stages cached with the ``generate`` path stay
valid: the same warpers in the same order (temperature, then top-p; ``top_k`` off), ``softmax`` then
``torch.multinomial`` over *all* rows every step (finished rows are drawn too, so the random stream advances the
same way, then replaced by the pad token), the same position ids (from the attention mask's cumulative sum), the
attention mask dropped when nothing is padded, and ``logits_to_keep=1``.

The repeated cache's plain layers are given room for the whole decode (``ReservedLayer``): a ``DynamicLayer``
concatenates its keys and values with each new token, copying the whole cache every step, which on CPU cost as
much time as the model's matrix products. The attention still sees the same keys and values, so the same logits.

``match_generate=False`` gives up that sameness for speed: ``torch.multinomial`` draws one exponential per
vocabulary entry per row per step (41% of a bf16 SmolLM2 decode on the 2-core CPU, measured), where inverse-CDF
sampling (``sample_categorical``) needs one uniform per row: the same distribution, another random stream. Then
any dtype runs (bf16 too, whose prefill of B prompts and of B·n copies round differently), and the samples are
not ``generate``'s for the same seed.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper
from transformers.cache_utils import DynamicLayer

from rankers.llm.hf import left_pad_positions
from tuna_open.generate.base import SamplingParams


class PrefillOnceUnavailable(RuntimeError):
    """This model cannot be sampled here with the samples ``generate`` would draw (raised before any is drawn)."""


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views of a buffer with ``room`` more positions (writing past
    them fails: the decode loop never asks for more)."""

    def __init__(self, layer: DynamicLayer, room: int) -> None:
        super().__init__()
        rows, heads, length, dim = layer.keys.shape
        self.buffers = [t.new_empty((rows, heads, length + room, dim)) for t in (layer.keys, layer.values)]
        for buffer, states in zip(self.buffers, (layer.keys, layer.values)):
            buffer[:, :, :length] = states
        self.keys, self.values = (b[:, :, :length] for b in self.buffers)
        self.device, self.is_initialized = layer.keys.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.keys.shape[-2]
        end = start + key_states.shape[-2]
        for buffer, states in zip(self.buffers, (key_states, value_states)):
            buffer[:, :, start:end] = states
        self.keys, self.values = (b[:, :, :end] for b in self.buffers)
        return self.keys, self.values


def reserve(cache: Any, room: int) -> None:
    """Give each plain, filled ``DynamicLayer`` of ``cache`` room for ``room`` more positions (``ReservedLayer``)."""
    cache.layers = [ReservedLayer(layer, room) if type(layer) is DynamicLayer and layer.is_initialized else layer
                    for layer in cache.layers]


def warpers(params: SamplingParams) -> LogitsProcessorList:
    """The logits warpers ``generate`` builds for ``params`` (its ``_get_logits_processor`` order and conditions)."""
    processors = LogitsProcessorList()
    if params.temperature > 0:
        if params.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(params.temperature))
        if params.top_p < 1.0:
            processors.append(TopPLogitsWarper(params.top_p))
    return processors


def sample_categorical(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of ``probs`` [rows, V] (rows summing to 1), by inverse-CDF sampling: one uniform per row.

    The CDF is summed in float64 so that its rounding (about 1e-16 per entry) never moves a draw by more than a
    token of probability ~1e-12; ``right=True`` never returns a zero-probability token (its CDF step is empty),
    and a uniform that rounds onto the total is kept below it.
    """
    cdf = probs.double().cumsum(dim=-1)
    total = cdf[:, -1:]
    u = torch.minimum(torch.rand(total.shape, dtype=torch.float64, device=probs.device) * total,
                      torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True).squeeze(1)


def sample_prefill_once(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, params: SamplingParams,
                        pad_token_id: int, eos_token_id: int,
                        match_generate: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(new tokens [B·n, T], summed raw log-probabilities [B·n] or None) for left-padded prompts [B, L].

    Rows are prompt-major (prompt i's samples are rows i·n … i·n+n-1), as ``num_return_sequences`` orders them.
    A row's sum covers its tokens up to and including its first EOS; tokens after it are ``pad_token_id``.
    ``match_generate``: draw ``generate``'s samples (float32 only), else sample by ``sample_categorical``.
    """
    # measured on SmolLM2 in bf16: 16-row and 64-row prefills sample differently
    if match_generate and model.dtype != torch.float32:
        raise PrefillOnceUnavailable(f"{model.dtype} weights round a prefill of the prompts and one of their n "
                                     f"copies differently, so the samples would not be generate's")
    n = params.n
    greedy = params.temperature <= 0
    processors = warpers(params)
    positions = left_pad_positions(attention_mask)
    prompt_mask = None if bool((attention_mask == 1).all()) else attention_mask  # generate drops an all-ones mask
    out = model(input_ids=input_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True,
                logits_to_keep=1)
    cache = out.get("cache")
    if not hasattr(cache, "batch_repeat_interleave"):
        raise PrefillOnceUnavailable(f"{type(model).__name__} returned {type(cache).__name__} as its cache")
    cache.batch_repeat_interleave(n)
    reserve(cache, params.max_new_tokens - 1)
    logits = out.logits[:, -1].float().repeat_interleave(n, dim=0)
    position = positions[:, -1:].repeat_interleave(n, dim=0)
    mask = None if prompt_mask is None else prompt_mask.repeat_interleave(n, dim=0)
    del out
    rows = logits.shape[0]
    unfinished = torch.ones(rows, dtype=torch.bool, device=input_ids.device)
    sums = torch.zeros(rows, dtype=torch.float32, device=input_ids.device) if params.logprobs else None
    tokens = input_ids.new_empty((rows, 0))
    while True:
        scores = processors(tokens, logits)
        if greedy:
            next_tokens = torch.argmax(scores, dim=-1)
        elif match_generate:
            next_tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            next_tokens = sample_categorical(torch.softmax(scores, dim=-1))
        next_tokens = torch.where(unfinished, next_tokens, pad_token_id)
        if sums is not None:
            token_lp = torch.log_softmax(logits, dim=-1).gather(-1, next_tokens[:, None]).squeeze(-1)
            sums += token_lp * unfinished
        tokens = torch.cat([tokens, next_tokens[:, None]], dim=-1)
        unfinished &= next_tokens != eos_token_id
        if not bool(unfinished.any()) or tokens.shape[1] >= params.max_new_tokens:
            return tokens, sums
        position = position + 1
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=-1)
        out = model(input_ids=next_tokens[:, None], attention_mask=mask, position_ids=position, cache=cache,
                    use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1].float()
        del out
