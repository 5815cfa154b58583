"""What one Tuna dataset item is: a prompt's tokenized candidates with their tiers, MLE flags, ranker scores and
reference log-likelihoods, and the collator that pads a batch of them into [B, N, L] tensors.

Apart from the trainer (``tuna_open.train.tuna_trainer``) because the benchmarks and the tests build batches
without a trainer, and this side imports neither transformers nor torch until a batch is made.

Sequences follow the project's one prompt/response rule (``rankers.llm.tokenization``, shared with SFT and the
likelihood rankers): ``tokenizer(prompt)`` (with the tokenizer's special tokens), then the response's tokens as
they follow the prompt in ``tokenizer(prompt + response)``, then EOS; labels are -100 on the prompt and on padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, Sequence, TypedDict

from rankers.llm.tokenization import encode_responses

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


class TunaExample(TypedDict):
    prompt: str
    """Templated prompt."""
    candidates: list[str]
    """Responses best→worst; prompts may have different numbers of candidates."""
    tiers: NotRequired[list[int]]
    """Per candidate: equal values for candidates the judge scored equally (their pairs are not ranked)."""
    mle: NotRequired[list[bool]]
    """Per candidate: whether the MLE term imitates it (default: every candidate, as the paper does)."""
    scores: NotRequired[list[float]]
    """Per candidate: the ranker's score (higher is better); objectives that read scores need them."""


class Group(TypedDict):
    """One prompt's tokenized candidates with their tiers and MLE flags: a dataset item."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    tiers: list[int]
    mle: list[bool]
    scores: list[float]
    """The ranker's scores (0 where it gave none: only objectives that need scores read them, and they check)."""
    ref_logps: list[float]
    """Summed log-likelihoods under the starting model, filled before training for objectives anchored to it."""


def encode_group(tokenizer: "PreTrainedTokenizerBase", prompt: str, responses: Sequence[str],
                 max_length: int, tiers: Sequence[int] | None = None, mle: Sequence[bool] | None = None,
                 scores: Sequence[float] | None = None) -> Group:
    """Tokenize one prompt with its responses (EOS appended), labels -100 on the prompt; truncated to max_length.

    Without ``tiers`` every candidate is its own tier (a strict order); without ``mle`` every candidate is imitated.
    """
    from tuna_open.train.losses import IGNORE_INDEX  # imports torch: not when the stage configs are validated

    group: Group = {"input_ids": [], "labels": [], "tiers": list(tiers if tiers is not None else range(len(responses))),
                    "mle": list(mle if mle is not None else [True] * len(responses)),
                    "scores": [float(x) for x in scores] if scores is not None else [0.0] * len(responses),
                    "ref_logps": [0.0] * len(responses)}
    for context_ids, response_ids in encode_responses(tokenizer, prompt, responses):
        group["input_ids"].append((context_ids + response_ids)[:max_length])
        group["labels"].append(([IGNORE_INDEX] * len(context_ids) + response_ids)[:max_length])
    return group


@dataclass(frozen=True)
class TunaCollator:
    """Pads groups into [B, N, L] tensors: missing candidates are all-padding rows (labels -100), which the loss
    leaves out; L is the longest sequence in the batch, not ``max_length``."""

    pad_token_id: int

    def __call__(self, groups: Sequence[Group]) -> dict[str, "torch.Tensor"]:
        import torch

        from tuna_open.train.losses import IGNORE_INDEX

        n_cand = max(len(g["input_ids"]) for g in groups)
        length = max(len(ids) for g in groups for ids in g["input_ids"])
        shape = (len(groups), n_cand, length)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        tiers = torch.full(shape[:2], -1, dtype=torch.long)  # padding candidates are masked by their labels anyway
        mle_mask = torch.zeros(shape[:2], dtype=torch.bool)
        ranker_scores = torch.zeros(shape[:2])
        ref_logps = torch.zeros(shape[:2])
        for b, group in enumerate(groups):
            for n, (ids, labs) in enumerate(zip(group["input_ids"], group["labels"])):
                input_ids[b, n, :len(ids)] = torch.tensor(ids)
                labels[b, n, :len(labs)] = torch.tensor(labs)
                attention_mask[b, n, :len(ids)] = 1
            tiers[b, :len(group["tiers"])] = torch.tensor(group["tiers"])
            mle_mask[b, :len(group["mle"])] = torch.tensor(group["mle"])
            for key, out in (("scores", ranker_scores), ("ref_logps", ref_logps)):
                values = group.get(key) or [0.0] * len(group["input_ids"])
                out[b, :len(values)] = torch.tensor(values)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "tiers": tiers,
                "mle_mask": mle_mask, "ranker_scores": ranker_scores, "ref_logps": ref_logps}
