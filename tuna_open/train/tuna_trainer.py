"""Tuna training: the paper's ranking objective (``tuna_open.train.losses.tuna_loss``) in a transformers ``Trainer``.

Everything that is not the loss comes from ``Trainer`` (and so from accelerate): DDP, DeepSpeed and FSDP under
``accelerate launch`` (configs in ``recipes/accelerate/``), bf16, activation checkpointing, gradient
accumulation, schedulers. One dataset item is one prompt with all its candidates, so a batch (and thus gradient
accumulation or data parallelism) never splits a prompt's ranking.

Sequences follow the project's one prompt/response rule (``rankers.llm.tokenization``, shared with SFT and the
likelihood rankers): ``tokenizer(prompt)`` (with the tokenizer's special tokens), then the response's tokens as
they follow the prompt in ``tokenizer(prompt + response)``, then EOS; labels are -100 on the prompt and on padding.
Original SFT examples can be mixed in as one-candidate groups: they add MLE tokens and no ranking pairs,
the regulariser the paper keeps from instruction tuning.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NotRequired, Sequence, TypedDict

from pydantic import Field

from rankers.llm.tokenization import encode_responses
from tuna_open.train.padding import ensure_pad_token
from tuna_open.train.scaffold import train_into
from tuna_open.train.settings import LoraSettings, TrainSettings
from tuna_open.train.sft import SftExample
from tuna_open.train.trl_config import trl_args

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

HISTORY_FIELDS = {"loss": "loss", "rank_loss": "rank_loss", "mle_loss": "mle_loss", "learning_rate": "learning_rate"}


class TunaExample(TypedDict):
    prompt: str
    """Templated prompt."""
    candidates: list[str]
    """Responses best→worst; prompts may have different numbers of candidates."""
    tiers: NotRequired[list[int]]
    """Per candidate: equal values for candidates the judge scored equally (their pairs are not ranked)."""
    mle: NotRequired[list[bool]]
    """Per candidate: whether the MLE term imitates it (default: every candidate, as the paper does)."""


class Group(TypedDict):
    """One prompt's tokenized candidates with their tiers and MLE flags: a dataset item."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    tiers: list[int]
    mle: list[bool]


class TunaTrainConfig(TrainSettings):
    """Defaults are Tuna_p's in the paper (LMOps ``train_tuna.sh``: lr 1e-5, cosine, margin 0.1, MLE weight 1,
    lenpen 1, max length 512), bar the batch size (16 prompts per GPU there) and the inherited ``warmup_steps`` 0
    (2 there). Nothing lowers the lr for Tuna_c: its 1e-6 is set in the recipe (``recipes/paper_gpt4.yaml``).

    The shared TrainingArguments knobs (``TrainSettings``) keep the names every other trainer uses.
    """

    learning_rate: float = Field(1e-5, gt=0)
    per_device_train_batch_size: int = Field(1, gt=0)
    """Prompts per device and micro-batch, each with all its candidates."""
    lr_scheduler_type: str = "cosine"
    margin: float = Field(0.1, ge=0)
    mle_weight: float = Field(1.0, ge=0)
    rank_weight: float = Field(1.0, ge=0)
    """Weight of the ranking term (the paper: 1). 0 is the ablation that shows what the ranking term adds."""
    lenpen: float = 1.0
    """Length penalty: a candidate's score is its summed log-likelihood / length ** lenpen."""
    max_length: int = Field(512, gt=1)
    """Prompt + response tokens; longer sequences lose their end, prompts this long are skipped."""
    sft_mix_ratio: float = Field(1.0, ge=0)
    """SFT examples mixed in per ranked prompt when ``sft_examples`` are given (sampled with the seed)."""
    optim: str = "adamw_torch"
    """A transformers ``OptimizerNames`` value."""
    lora: LoraSettings | None = None

    not_for_trl: ClassVar[frozenset[str]] = TrainSettings.not_for_trl | {
        "margin", "mle_weight", "rank_weight", "lenpen", "max_length", "sft_mix_ratio"}
    """The loss's and the dataset's knobs: ``TunaTrainer`` and ``encode_group`` take them, not
    ``TrainingArguments``."""


def encode_group(tokenizer: "PreTrainedTokenizerBase", prompt: str, responses: Sequence[str],
                 max_length: int, tiers: Sequence[int] | None = None, mle: Sequence[bool] | None = None) -> Group:
    """Tokenize one prompt with its responses (EOS appended), labels -100 on the prompt; truncated to max_length.

    Without ``tiers`` every candidate is its own tier (a strict order); without ``mle`` every candidate is imitated.
    """
    from tuna_open.train.losses import IGNORE_INDEX  # imports torch: not when the stage configs are validated

    group: Group = {"input_ids": [], "labels": [], "tiers": list(tiers if tiers is not None else range(len(responses))),
                    "mle": list(mle if mle is not None else [True] * len(responses))}
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
        for b, group in enumerate(groups):
            for n, (ids, labs) in enumerate(zip(group["input_ids"], group["labels"])):
                input_ids[b, n, :len(ids)] = torch.tensor(ids)
                labels[b, n, :len(labs)] = torch.tensor(labs)
                attention_mask[b, n, :len(ids)] = 1
            tiers[b, :len(group["tiers"])] = torch.tensor(group["tiers"])
            mle_mask[b, :len(group["mle"])] = torch.tensor(group["mle"])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, "tiers": tiers,
                "mle_mask": mle_mask}


def _tuna_trainer_class() -> type:
    """``TunaTrainer`` is built on first use so importing this module does not import transformers."""
    import torch
    from transformers import Trainer

    from tuna_open.train.losses import tuna_loss

    class TunaTrainer(Trainer):
        """``Trainer`` whose loss is ``tuna_loss``; logs its ranking and MLE components next to ``loss``."""

        # tuna_loss is a per-micro-batch mean: Trainer must divide it by the accumulation steps.
        loss_is_scaled_for_ga = False

        def __init__(self, *args: Any, margin: float, mle_weight: float, rank_weight: float, lenpen: float,
                     **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loss_kwargs = {"margin": margin, "mle_weight": mle_weight, "rank_weight": rank_weight,
                                "lenpen": lenpen}
            self._components: dict[str, list[torch.Tensor]] = {"rank_loss": [], "mle_loss": []}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = tuna_loss(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"],
                            tiers=inputs.get("tiers"), mle_mask=inputs.get("mle_mask"), **self.loss_kwargs)
            if model.training:
                self._components["rank_loss"].append(out.rank_loss.detach())
                self._components["mle_loss"].append(out.mle_loss.detach())
            return (out.loss, {"scores": out.scores}) if return_outputs else out.loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            # Train-step logs carry "loss"; average the components over the same window, across processes.
            if "loss" in logs and self._components["rank_loss"]:
                for key, values in self._components.items():
                    logs[key] = float(self.accelerator.reduce(torch.stack(values).mean(), reduction="mean"))
                    values.clear()
            super().log(logs, start_time)

    return TunaTrainer


def _groups(tokenizer: "PreTrainedTokenizerBase", examples: Sequence[TunaExample],
            sft_examples: Sequence[SftExample] | None, config: TunaTrainConfig) -> tuple[list[Group], list[Group]]:
    """(ranked groups, SFT groups) to train on; groups whose prompt leaves no room for a response are skipped."""
    from tuna_open.train.losses import IGNORE_INDEX

    ranked = [encode_group(tokenizer, e["prompt"], e["candidates"], config.max_length, e.get("tiers"), e.get("mle"))
              for e in examples]
    sft: list[Group] = []
    if sft_examples and config.sft_mix_ratio > 0:
        count = round(config.sft_mix_ratio * len(examples))
        rng = random.Random(config.seed)
        # Without replacement while the pool lasts, then cycling through reshuffled copies.
        pool: list[SftExample] = []
        while len(pool) < count:
            pool += rng.sample(list(sft_examples), len(sft_examples))
        sft = [encode_group(tokenizer, e["prompt"], [e["response"]], config.max_length) for e in pool[:count]]
    fits = [[g for g in groups if any(x != IGNORE_INDEX for labels in g["labels"] for x in labels)]
            for groups in (ranked, sft)]
    skipped = len(ranked) + len(sft) - len(fits[0]) - len(fits[1])
    if skipped:
        log.warning("skipped %d training prompts longer than max_length=%d", skipped, config.max_length)
    if not fits[0]:
        raise ValueError(f"no ranked example fits max_length={config.max_length}")
    return fits[0], fits[1]


def train_tuna(model_path: str, examples: Sequence[TunaExample], config: TunaTrainConfig, output_dir: str,
               sft_examples: Sequence[SftExample] | None = None) -> dict:
    """Fine-tune ``model_path`` with the Tuna loss on ranked ``examples``; save model + tokenizer to ``output_dir``.

    The model is trained into a scratch directory and renamed when complete (``atomic_output_dir``), so
    ``output_dir`` only ever holds a whole model. LoRA adapters are merged before saving. Returns the
    per-logging-step ``history`` (loss, rank_loss, mle_loss, learning_rate), ``train_seconds`` and the number of
    ranked ``examples`` trained on (prompts too long for ``max_length`` are skipped).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{model_path}: the tokenizer has no EOS token; responses are trained with EOS appended")
    ranked, sft = _groups(tokenizer, examples, sft_examples, config)

    def build(workdir: Path) -> Any:
        # TrainingArguments first: under DeepSpeed ZeRO-3 it makes from_pretrained load the weights already sharded.
        args = trl_args(config, workdir, data_seed=config.seed,
                        activation_checkpointing_kwargs={"use_reentrant": False}, remove_unused_columns=False,
                        ddp_find_unused_parameters=False)
        model = AutoModelForCausalLM.from_pretrained(model_path)
        ensure_pad_token(tokenizer, model)
        model.config.use_cache = False
        if config.lora is not None:
            from peft import get_peft_model

            model = get_peft_model(model, config.lora.peft_config("CAUSAL_LM"))
        trainer = _tuna_trainer_class()(
            model=model, args=args, train_dataset=ranked + sft, data_collator=TunaCollator(tokenizer.pad_token_id),
            processing_class=tokenizer, margin=config.margin, mle_weight=config.mle_weight,
            rank_weight=config.rank_weight, lenpen=config.lenpen)
        if config.lora is not None and _shards_weights(trainer):
            raise ValueError("LoRA under DeepSpeed ZeRO-3 or FSDP is not supported: merging the adapters on save "
                             "needs whole weights (use DDP or ZeRO-2 for LoRA)")
        return trainer

    return train_into(output_dir, config, HISTORY_FIELDS, build, extra=lambda trainer: {"examples": len(ranked)})


def _shards_weights(trainer: Any) -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return trainer.is_fsdp_enabled or is_deepspeed_zero3_enabled()
