"""GRPO and RLOO baselines (TRL ``GRPOTrainer`` / ``RLOOTrainer``) with any ranker as the reward.

Both sample ``num_generations`` completions per prompt and learn from rewards compared within that group, which
is exactly what a ranker provides: one ``RankRequest`` per group, the ranker's scores as rewards where it gives
them, else rank positions mapped to [0, 1]. So a GPT-4 judge, a Python verifier or a reward model can drive
online RL through the same interface that drives Tuna. The two algorithms share everything here but the trainer
class and their advantage estimate (GRPO: group-normalised; RLOO: leave-one-out baseline).

Prompts are the templated strings SFT trained on (TRL's non-conversational format: no chat template is applied);
completions are decoded without special tokens, so the ranker sees plain response text.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Sequence

from pydantic import NonNegativeFloat, PositiveInt

from rankers.base import Ranker, RankRequest
from tuna_open.train.padding import ensure_pad_token
from tuna_open.train.preferences import ranking_rewards
from tuna_open.train.scaffold import train_into
from tuna_open.train.settings import LoraSettings, TrainSettings, peft_config
from tuna_open.train.trl_config import trl_args

if TYPE_CHECKING:
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

HISTORY_FIELDS = {
    "loss": "loss",
    "reward": "reward",
    "reward_std": "reward_std",
    "completion_length": "completions/mean_length",
    "learning_rate": "learning_rate",
}


class GRPOSettings(TrainSettings):
    algorithm: Literal["grpo", "rloo"] = "grpo"
    learning_rate: NonNegativeFloat = 1e-6
    per_device_train_batch_size: PositiveInt = 8
    """Completions (not prompts) per device step; with ``gradient_accumulation_steps`` it must be a multiple of
    ``num_generations`` so every prompt's group is generated together."""
    num_generations: int = 4
    """Completions sampled (and ranked together) per prompt."""
    max_completion_length: int = 128
    temperature: float = 1.0
    beta: float = 0.04
    """KL coefficient towards the starting model (0 skips loading a reference model)."""
    num_iterations: int = 1
    """Optimisation passes per generated batch (μ in the GRPO paper)."""
    epsilon: float = 0.2
    lora: LoraSettings | None = None

    not_for_trl: ClassVar[frozenset[str]] = TrainSettings.not_for_trl | {"algorithm"}
    """``algorithm`` picks the config and trainer class; it is no field of either."""

    def trl_config_class(self) -> type["GRPOConfig | RLOOConfig"]:
        from trl import GRPOConfig, RLOOConfig

        return GRPOConfig if self.algorithm == "grpo" else RLOOConfig


class RankerReward:
    """A TRL reward function backed by a ranker: rank each prompt's completions together, return per-completion
    rewards.

    TRL calls it with the flat list of a batch's completions, each prompt's ``num_generations`` completions
    adjacent, plus the dataset columns repeated per completion. A group is a run of adjacent completions with the
    same ``id`` — the whole group on one device; on several devices TRL may split a group, and each part is then
    ranked on its own. A failed ranking gives its group reward 0 (equal rewards: no gradient from that prompt)
    and is counted in ``failed_groups`` and logged as ``ranker/failed_fraction``.
    """

    def __init__(self, ranker: Ranker) -> None:
        self.ranker = ranker
        self.__name__ = f"ranker_{ranker.name}"  # TRL logs rewards under the function's name
        self.groups = 0
        self.failed_groups = 0

    def __call__(self, prompts: list[str], completions: list[str], **columns: Any) -> list[float]:
        ids: list[str] = columns["id"]
        groups: list[list[int]] = []
        for i in range(len(completions)):
            if groups and ids[groups[-1][0]] == ids[i]:
                groups[-1].append(i)
            else:
                groups.append([i])
        requests = [RankRequest(prompt=columns["instruction"][g[0]], input=columns["input"][g[0]],
                                reference=columns["output"][g[0]], id=ids[g[0]],
                                candidates=[completions[i] for i in g]) for g in groups]
        rankings = self.ranker.rank(requests)
        rewards = [0.0] * len(completions)
        failed = 0
        for group, ranking in zip(groups, rankings, strict=True):
            if ranking.failed:
                failed += 1
                continue
            for i, reward in zip(group, ranking_rewards(ranking.order, ranking.scores), strict=True):
                rewards[i] = reward
        self.groups += len(groups)
        self.failed_groups += failed
        log_metric: Callable[[str, float], None] | None = columns.get("log_metric")
        if log_metric is not None:
            log_metric("ranker/failed_fraction", failed / len(groups))
        return rewards


def build_grpo_trainer(policy_path: str, prompts: Sequence[Mapping[str, Any]], reward: RankerReward,
                       settings: GRPOSettings, workdir: str | Path) -> "GRPOTrainer | RLOOTrainer":
    """A ready ``GRPOTrainer`` or ``RLOOTrainer`` (``settings.algorithm``) rewarding with ``reward``."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import GRPOTrainer, RLOOTrainer

    set_seed(settings.seed)
    trainer_cls = GRPOTrainer if settings.algorithm == "grpo" else RLOOTrainer
    dataset = Dataset.from_list([
        {"prompt": p["prompt"], "id": str(p.get("id", i)), "instruction": p["instruction"],
         "input": p.get("input", ""), "output": p.get("output")}
        for i, p in enumerate(prompts)])
    args = trl_args(settings, Path(workdir))
    model, tokenizer = AutoModelForCausalLM.from_pretrained(policy_path), AutoTokenizer.from_pretrained(policy_path)
    ensure_pad_token(tokenizer, model)
    return trainer_cls(model=model, reward_funcs=reward, args=args,
                       train_dataset=dataset, processing_class=tokenizer,
                       peft_config=peft_config(settings.lora, "CAUSAL_LM"))


def train_grpo(policy_path: str, prompts: Sequence[Mapping[str, Any]], ranker: Ranker, settings: GRPOSettings,
               output_dir: str | Path) -> dict[str, Any]:
    """GRPO- (or RLOO-) train ``policy_path`` with ``ranker`` as the reward; the policy lands in ``output_dir``.

    ``prompts`` are records with ``prompt`` (templated text, what the policy sees) and what the ranker needs:
    ``instruction``, optional ``input``, ``output`` (reference answer, for verifiers) and ``id``. Returns
    ``history`` (step, loss, mean/std reward, completion length, learning rate), ``train_seconds``, ``examples``,
    and ``ranker_groups`` / ``failed_groups`` (rankings requested / failed).
    """
    if not prompts:
        raise ValueError("GRPO needs at least one prompt")
    reward = RankerReward(ranker)
    result = train_into(output_dir, settings, HISTORY_FIELDS,
                        lambda workdir: build_grpo_trainer(policy_path, prompts, reward, settings, workdir))
    return {**result, "ranker_groups": reward.groups, "failed_groups": reward.failed_groups}
