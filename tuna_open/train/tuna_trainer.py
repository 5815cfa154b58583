"""Tuna training: the paper's ranking objective (``tuna_open.train.losses.tuna_loss``) in a transformers ``Trainer``.

Everything that is not the loss comes from ``Trainer`` (and so from accelerate): DDP, DeepSpeed and FSDP under
``accelerate launch`` (configs in ``recipes/accelerate/``), bf16, activation checkpointing, gradient
accumulation, schedulers. One dataset item is one prompt with all its candidates, so a batch (and thus gradient
accumulation or data parallelism) never splits a prompt's ranking.

The dataset items and their collator are ``tuna_open.train.tuna_data``. Original SFT examples can be mixed in as
one-candidate groups: they add MLE tokens and no ranking pairs, the regulariser the paper keeps from instruction
tuning.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from pydantic import Field

from tuna_open.recipe.later_defaults import LaterDefaults
from tuna_open.train.padding import ensure_pad_token
from tuna_open.train.scaffold import train_into
from tuna_open.train.settings import LoraSettings, MarginScale, ObjectiveName, TrainSettings
from tuna_open.train.sft import SftExample
from tuna_open.train.trl_config import trl_args
from tuna_open.train.tuna_data import Group, TunaCollator, TunaExample, encode_group

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from tuna_open.train.objectives import RankingObjective

log = logging.getLogger(__name__)

HISTORY_FIELDS = {"loss": "loss", "rank_loss": "rank_loss", "mle_loss": "mle_loss", "learning_rate": "learning_rate"}


class TunaTrainConfig(TrainSettings, LaterDefaults):
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
    objective: ObjectiveName = "margin"
    """The ranking term (``tuna_open.train.objectives``): ``margin`` is the paper's; ``listnet`` and ``lipo`` (and
    ``margin`` with ``margin_scale: score``) need a ranker that gives scores; ``lipo`` and ``dpo_pl`` are anchored
    to the starting model, whose log-likelihoods are computed once before training (no second model in memory)."""
    margin_scale: MarginScale = "rank"
    """``margin``: required gaps by rank distance (``rank``, the paper) or by the ranker's score gap (``score``)."""
    beta: float = Field(0.1, gt=0)
    """``lipo``, ``dpo_pl``: β of the implicit reward β·(log π - log π_ref)."""
    temperature: float = Field(1.0, gt=0)
    """``listnet``, ``plackett_luce``: τ' dividing the student's sequence scores."""
    target_temperature: float = Field(1.0, gt=0)
    """``listnet``: τ dividing the ranker's scores (a teacher's mean log-probabilities are on the student's scale)."""
    shared_prefix: bool = True
    """Run each prompt once for all its candidates (``tuna_open.train.shared_prefix``; same loss and gradients).
    Off by itself, logged, under sharded weights, several processes, or a model that gives no cache."""

    LATER_DEFAULTS: ClassVar[dict[str, Any]] = {"objective": "margin", "margin_scale": "rank", "beta": 0.1,
                                                "temperature": 1.0, "target_temperature": 1.0,
                                                "shared_prefix": True}
    """The behaviour before these keys existed (``LaterDefaults``): a recipe that does not use them keeps its
    cached stages."""

    def ranking_objective(self) -> "RankingObjective":
        from tuna_open.train.objectives import RankingObjective  # imports torch: not when configs are validated

        return RankingObjective(self.objective, self.margin, self.margin_scale, self.beta, self.temperature,
                                self.target_temperature)

    not_for_trl: ClassVar[frozenset[str]] = TrainSettings.not_for_trl | {
        "margin", "mle_weight", "rank_weight", "lenpen", "max_length", "sft_mix_ratio", "objective", "margin_scale",
        "beta", "temperature", "target_temperature", "shared_prefix"}
    """The loss's and the dataset's knobs: ``TunaTrainer`` and ``encode_group`` take them, not
    ``TrainingArguments``."""


def _tuna_trainer_class() -> type:
    """``TunaTrainer`` is built on first use so importing this module does not import transformers."""
    from functools import partial

    import torch
    from transformers import Trainer

    from tuna_open.train.losses import IGNORE_INDEX
    from tuna_open.train.objectives import ranked_pairs
    from tuna_open.train.shared_prefix import PrefixSharing

    class TunaTrainer(Trainer):
        """``Trainer`` whose loss is ``tuna_loss`` with the configured ranking term; logs, next to ``loss``:

        * ``rank_loss``, ``mle_loss``: the two terms (unweighted), averaged over the logging window;
        * ``logps/rank_K``: the student's mean sequence score (length-normalised log-likelihood) of the K-th best
          candidate, over prompts with at least two candidates, as TRL's DPO logs ``logps/chosen``: whether the
          ranking term lifts the best or only pushes the rest down;
        * ``pair_accuracy``: the share of ranked pairs the student's scores order as the ranker did, on each batch
          before the step that trains on it (in the first epoch: prompts it has not trained on yet);
        * ``grad_norm/rank``, ``grad_norm/mle``: the L2 norm of the gradient each weighted term alone contributes,
          by ``torch.autograd.grad`` on the first micro-batch of each logging window (two extra backward passes
          per window; single-process, unsharded training only, where it cannot disturb a wrapper's gradient
          hooks).
        """

        # tuna_loss is a per-micro-batch mean: Trainer must divide it by the accumulation steps.
        loss_is_scaled_for_ga = False

        def __init__(self, *args: Any, objective: RankingObjective, mle_weight: float, rank_weight: float,
                     lenpen: float, positions: int, shared_prefix: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Sharded weights are gathered by their engine once per forward, and DDP's reducer is untested with
            # the two forwards per step: both keep the per-candidate path.
            reason = ("shared_prefix is off" if not shared_prefix else
                      "gradient checkpointing turns the model's cache off" if self.args.gradient_checkpointing else
                      "weights are sharded (DeepSpeed ZeRO-3 or FSDP)" if _shards_weights(self) else
                      "several processes (DDP)" if self.args.world_size > 1 else None)
            self.loss_fn = PrefixSharing(reason)
            self.objective = objective
            self.loss_kwargs = {"mle_weight": mle_weight, "rank_weight": rank_weight, "lenpen": lenpen}
            self.positions = positions
            self.measures_gradients = self.args.world_size == 1 and not (self.is_deepspeed_enabled
                                                                         or self.is_fsdp_enabled)
            self._measure_next = self.measures_gradients
            self._components: dict[str, list[torch.Tensor]] = {"rank_loss": [], "mle_loss": []}
            self._grad_norms: dict[str, float] = {}
            self._stats: dict[str, torch.Tensor] = {}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ranking = partial(self.objective, tiers=inputs.get("tiers"), ranker_scores=inputs.get("ranker_scores"),
                              ref_logps=inputs.get("ref_logps"))
            out = self.loss_fn(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"],
                               mle_mask=inputs.get("mle_mask"), ranking=ranking, **self.loss_kwargs)
            if model.training:
                self._components["rank_loss"].append(out.rank_loss.detach())
                self._components["mle_loss"].append(out.mle_loss.detach())
                self._count(out.scores.detach(), inputs)
                if self._measure_next:
                    self._measure_next = False
                    self._grad_norms = self._gradient_norms(model, out)
            return (out.loss, {"scores": out.scores}) if return_outputs else out.loss

        def _count(self, scores: torch.Tensor, inputs: dict[str, torch.Tensor]) -> None:
            """Add the batch to the window's per-position score sums and pair counts."""
            real = (inputs["labels"][..., 1:] != IGNORE_INDEX).any(-1)
            ranked = real & (real.sum(-1, keepdim=True) > 1)
            pairs = ranked_pairs(real, inputs.get("tiers"))
            n = scores.shape[1]
            if not self._stats:
                self._stats = {key: scores.new_zeros(size) for key, size in
                               (("score_sum", self.positions), ("score_count", self.positions), ("pairs", 1),
                                ("right", 1))}
            self._stats["score_sum"][:n] += torch.where(ranked, scores, 0.0).sum(0)
            self._stats["score_count"][:n] += ranked.sum(0)
            self._stats["pairs"] += pairs.sum()
            self._stats["right"] += (pairs & (scores[:, :, None] > scores[:, None, :])).sum()

        def _gradient_norms(self, model: torch.nn.Module, out: Any) -> dict[str, float]:
            params = [p for p in model.parameters() if p.requires_grad]
            norms = {}
            for key, term in (("rank", self.loss_kwargs["rank_weight"] * out.rank_loss),
                              ("mle", self.loss_kwargs["mle_weight"] * out.mle_loss)):
                grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True) \
                    if term.requires_grad else ()
                norms[f"grad_norm/{key}"] = math.sqrt(sum(float(g.float().square().sum()) for g in grads
                                                          if g is not None))
            return norms

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            # Train-step logs carry "loss"; average the components over the same window, across processes.
            if "loss" in logs and self._components["rank_loss"]:
                for key, values in self._components.items():
                    logs[key] = float(self.accelerator.reduce(torch.stack(values).mean(), reduction="mean"))
                    values.clear()
                stats = {key: self.accelerator.reduce(value, reduction="sum").tolist()
                         for key, value in self._stats.items()}
                for k, (total, count) in enumerate(zip(stats["score_sum"], stats["score_count"])):
                    if count:
                        logs[f"logps/rank_{k + 1}"] = total / count
                if stats["pairs"][0]:
                    logs["pair_accuracy"] = stats["right"][0] / stats["pairs"][0]
                logs.update(self._grad_norms)
                self._stats, self._grad_norms, self._measure_next = {}, {}, self.measures_gradients
            super().log(logs, start_time)

    return TunaTrainer


DIAGNOSTIC_KEYS = ("logps/", "pair_accuracy", "grad_norm/")
"""Log keys (prefixes) of the trainer's diagnostics, carried into the stage's history where a window has them."""


def _with_diagnostics(history: list[dict[str, float]], log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """``history`` rows with the diagnostics logged at the same step (a window may lack some: no 4th candidate)."""
    by_step = {float(e["step"]): e for e in log_history if "rank_loss" in e}
    return [{**row, **{k: float(v) for k, v in by_step.get(row["step"], {}).items() if k.startswith(DIAGNOSTIC_KEYS)}}
            for row in history]


def _fill_reference_logps(trainer: Any, groups: Sequence[Group], batch_size: int) -> None:
    """Set each group's ``ref_logps`` to its candidates' summed log-likelihoods under the trainer's model as it is
    now (the stage's starting model), once before training, as TRL's ``precompute_ref_log_probs`` does: the
    anchored objectives then need no second model in memory. Same numerics as training: the trainer's own loss
    path (``PrefixSharing``: each prompt computed once where training does so) under the accelerator's autocast;
    eval mode, so dropout does not make the reference noisy. LoRA adapters start as the identity."""
    import torch

    ranked = [g for g in groups if len(g["input_ids"]) > 1]  # one candidate has nothing to be ranked against
    model = trainer.model
    model.eval()
    with torch.no_grad(), trainer.accelerator.autocast():
        for start in range(0, len(ranked), batch_size):
            chunk = ranked[start:start + batch_size]
            batch = {k: v.to(trainer.args.device) for k, v in trainer.data_collator(chunk).items()}
            logps = trainer.loss_fn(model, batch["input_ids"], batch["attention_mask"], batch["labels"]).logps
            for group, row in zip(chunk, logps.tolist()):
                group["ref_logps"] = row[:len(group["input_ids"])]
    model.train()


def _groups(tokenizer: "PreTrainedTokenizerBase", examples: Sequence[TunaExample],
            sft_examples: Sequence[SftExample] | None, config: TunaTrainConfig) -> tuple[list[Group], list[Group]]:
    """(ranked groups, SFT groups) to train on; groups whose prompt leaves no room for a response are skipped."""
    from tuna_open.train.losses import IGNORE_INDEX

    if config.ranking_objective().needs_scores and not all("scores" in e for e in examples):
        raise ValueError(f"objective {config.objective!r} needs the ranker's scores on every ranked example")
    ranked = [encode_group(tokenizer, e["prompt"], e["candidates"], config.max_length, e.get("tiers"), e.get("mle"),
                           e.get("scores")) for e in examples]
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
    ranked ``examples`` trained on (prompts too long for ``max_length`` are skipped). History rows also carry the
    trainer's diagnostics (``TunaTrainer``: scores per rank position, pair accuracy, gradient norm per term).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{model_path}: the tokenizer has no EOS token; responses are trained with EOS appended")
    ranked, sft = _groups(tokenizer, examples, sft_examples, config)

    built: list[Any] = []  # the trainer, for its full log history (the diagnostics) once training is done

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
        objective = config.ranking_objective()
        trainer = _tuna_trainer_class()(
            model=model, args=args, train_dataset=ranked + sft, data_collator=TunaCollator(tokenizer.pad_token_id),
            processing_class=tokenizer, objective=objective, mle_weight=config.mle_weight,
            rank_weight=config.rank_weight, lenpen=config.lenpen, shared_prefix=config.shared_prefix,
            positions=max(len(g["input_ids"]) for g in ranked + sft))
        if config.lora is not None and _shards_weights(trainer):
            raise ValueError("LoRA under DeepSpeed ZeRO-3 or FSDP is not supported: merging the adapters on save "
                             "needs whole weights (use DDP or ZeRO-2 for LoRA)")
        if objective.needs_reference:
            if _shards_weights(trainer):
                raise ValueError(f"objective {config.objective!r} under DeepSpeed ZeRO-3 or FSDP is not supported: "
                                 "its reference log-probabilities are computed outside the sharded engine")
            _fill_reference_logps(trainer, ranked, config.per_device_train_batch_size)
        built.append(trainer)
        return trainer

    result = train_into(output_dir, config, HISTORY_FIELDS, build, extra=lambda trainer: {"examples": len(ranked)})
    return {**result, "history": _with_diagnostics(result["history"], built[0].state.log_history)}


def _shards_weights(trainer: Any) -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return trainer.is_fsdp_enabled or is_deepspeed_zero3_enabled()
