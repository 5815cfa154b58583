"""Sampling with a transformers causal LM: the default backend, runs anywhere torch runs (CPU included).

Two decode loops draw the same samples: ``prefill_once`` (``tuna_open.generate.hf_decode``, the default: each
prompt's forward once, its cache repeated for its n samples) and ``generate`` (transformers' own loop, which copies
each prompt n times before the prefill; the reference, and the fallback for a model whose cache cannot be repeated
or whose weights are not float32). With ``match_generate: false`` the ``prefill_once`` loop samples by inverse CDF
instead and runs in any dtype: other samples for the same seed, and, in bf16 on a CPU with native bf16, the fast
path (``benchmarks/sampling.py``'s ``hf_bf16``).
Log-probabilities are taken from the *raw* logits, not the temperature/top-p processed scores, because Tuna_p
ranks candidates by the teacher's own likelihood of them.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal, Sequence

from pydantic import ConfigDict, PositiveInt, model_validator

from rankers.llm.hf import load_tokenizer, release_model, resolve_device, resolve_dtype
from tuna_open.generate.base import Sample, SamplingParams
from tuna_open.recipe.later_defaults import LaterDefaults

log = logging.getLogger(__name__)


class HFSamplerConfig(LaterDefaults):
    model_config = ConfigDict(extra="forbid")

    batch_size: PositiveInt = 32
    """Prompts per batch (each expands to ``n`` sequences)."""
    dtype: str = "auto"
    device: str = "auto"
    decode: Literal["prefill_once", "generate"] = "prefill_once"
    """``prefill_once``: each prompt's forward runs once for its n samples; ``generate``: transformers' loop (n
    copies of each prompt). Both draw the same samples (with ``match_generate: true``, the default);
    ``prefill_once`` then falls back to ``generate`` by itself, logged once, on a model whose cache cannot be
    repeated or whose weights are not float32 (in bf16 a prefill of B prompts and one of B·n rows round
    differently: measured, the samples change)."""

    match_generate: bool = True
    """``true``: ``prefill_once`` draws exactly ``generate``'s samples (and falls back to it off float32).
    ``false``: ``prefill_once`` in any dtype, sampling by inverse CDF (one uniform per row per step instead of
    ``torch.multinomial``'s one per vocabulary entry): the same distribution, other samples than ``generate``'s
    for the same seed. With ``dtype: bfloat16`` on a CPU with native bf16 (AMX, AVX512-BF16) this is the fast
    path; what bf16 changes in samples and log-probs is measured in ``benchmarks/sampling.py``
    (``hf_bf16``) and stated in the README."""

    LATER_DEFAULTS: ClassVar[dict[str, Any]] = {"decode": "prefill_once", "match_generate": True}
    """Both draw what ``generate`` drew before the keys existed: cached sampling stages stay valid."""

    @model_validator(mode="after")
    def _match_generate_needs_prefill_once(self) -> "HFSamplerConfig":
        if not self.match_generate and self.decode != "prefill_once":
            raise ValueError("match_generate: false applies to decode: prefill_once (generate always matches "
                             "itself)")
        return self


def load_causal_lm(path: str, dtype: str = "auto", device: str = "auto"):  # -> (model, tokenizer)
    """Load a causal LM and its tokenizer (HF id or local dir), eval mode, with a pad token guaranteed."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype)).to(resolve_device(device)).eval()
    return model, tokenizer


def response_mask(new_tokens: Any, eos_token_id: int) -> Any:
    """[rows, T] bool: the tokens up to and including each row's first EOS (those after it are padding)."""
    is_eos = new_tokens == eos_token_id
    return (is_eos.cumsum(dim=1) - is_eos.long()) == 0


class HFSampler:
    """A ``Sampler`` over a transformers causal LM."""

    def __init__(self, model_path: str, config: HFSamplerConfig | None = None) -> None:
        self.config = config or HFSamplerConfig()
        self.model, self.tokenizer = load_causal_lm(model_path, self.config.dtype, self.config.device)
        self.truncated = 0
        """Prompts cut to fit the model's context (see ``_prompt_limit``); stages report it."""
        self.decode = self.config.decode
        """The loop in use: ``prefill_once`` turns into ``generate`` after it failed on this model."""

    def _prompt_limit(self, max_new_tokens: int) -> int | None:
        """Most prompt tokens that leave room for ``max_new_tokens`` in the model's context (None: no limit known).

        Why: a prompt longer than the context is never useful, and a huge one (a 5 MB record) makes attention
        try to allocate terabytes. Such prompts keep their *last* tokens, where the template puts the instruction's
        end and the response header the model continues from.
        """
        context = getattr(self.model.config, "max_position_embeddings", None)
        return max(1, context - max_new_tokens) if context else None

    def close(self) -> None:
        release_model(self)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        import torch  # here, not at module level: the recipe validates sampler options without loading torch

        out: list[list[Sample]] = []
        bs = self.config.batch_size
        with torch.no_grad():
            for start in range(0, len(prompts), bs):
                out.extend(self._generate_batch(list(prompts[start:start + bs]), params, seed=params.seed + start))
        return out

    def _generate_batch(self, prompts: list[str], params: SamplingParams, seed: int) -> list[list[Sample]]:
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"
        # Default special tokens (BOS for Llama) exactly as TRL training and the likelihood rankers tokenize prompts.
        limit = self._prompt_limit(params.max_new_tokens)
        # A prompt has fewer tokens than UTF-8 bytes (plus a few special ones): only then can it be too long,
        # and only then are its tokens counted and cut (keeping the last ones) before padding.
        if limit is not None and any(len(p.encode()) + 8 > limit for p in prompts):
            ids = tok(prompts)["input_ids"]
            self.truncated += sum(len(x) > limit for x in ids)
            enc = tok.pad({"input_ids": [x[-limit:] for x in ids]}, return_tensors="pt").to(self.model.device)
        else:
            enc = tok(prompts, return_tensors="pt", padding=True).to(self.model.device)
        torch.manual_seed(seed)
        new_tokens, sums = self._decode(enc["input_ids"], enc["attention_mask"], params)
        valid = response_mask(new_tokens, tok.eos_token_id)
        lengths = valid.sum(dim=1)
        texts = tok.batch_decode(new_tokens.masked_fill(~valid, tok.pad_token_id), skip_special_tokens=True)
        samples = [
            Sample(text=texts[i].strip(), logprob=float(sums[i]) if sums is not None else None,
                   num_tokens=int(lengths[i]))
            for i in range(len(texts))
        ]
        return [samples[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    def _decode(self, input_ids: Any, attention_mask: Any, params: SamplingParams) -> tuple[Any, Any]:
        """(new tokens [B·n, T], summed raw log-probabilities [B·n] or None) with the configured loop."""
        from tuna_open.generate.hf_decode import PrefillOnceUnavailable, sample_prefill_once

        tok = self.tokenizer
        if self.decode == "prefill_once":
            try:
                return sample_prefill_once(self.model, input_ids, attention_mask, params, tok.pad_token_id,
                                           tok.eos_token_id, match_generate=self.config.match_generate)
            except PrefillOnceUnavailable as reason:  # raised before any sample is drawn: the seed's stream is intact
                log.warning("sampling with transformers generate (decode: generate): %s", reason)
                self.decode = "generate"
        return self._decode_generate(input_ids, attention_mask, params)

    def _decode_generate(self, input_ids: Any, attention_mask: Any, params: SamplingParams) -> tuple[Any, Any]:
        """transformers' ``generate`` loop, log-probabilities from its stacked raw logits ([B·n, T, V])."""
        import torch

        tok = self.tokenizer
        greedy = params.temperature <= 0
        gen = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            do_sample=not greedy,
            temperature=None if greedy else params.temperature,
            top_p=None if greedy else params.top_p,
            top_k=None,
            num_return_sequences=params.n,
            max_new_tokens=params.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            return_dict_in_generate=True,
            output_logits=params.logprobs,
        )
        new_tokens = gen.sequences[:, input_ids.shape[1]:]
        if not params.logprobs:
            return new_tokens, None
        valid = response_mask(new_tokens, tok.eos_token_id)
        logits = torch.stack(gen.logits, dim=1).float()  # [B*n, T, V], raw (unprocessed) logits
        token_lp = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        return new_tokens, (token_lp * valid).sum(dim=1)
