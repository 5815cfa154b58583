"""PPO baseline (the paper's RLHF comparison) with ``trl.experimental.ppo.PPOTrainer`` from TRL 1.12.

Policy: the SFT model. Reference: a frozen copy of it (the KL anchor). Reward: a trained sequence-classification
reward model (``train_reward``), read at the last response token. Value model: initialised from that reward
model, as in TRL's examples and the InstructGPT recipe. Generation stops at EOS, and responses are truncated after
it before scoring, so the reward model sees ``prompt + response + EOS``, the text it was trained on.

TRL's PPO only takes a reward *model* (an ``nn.Module`` with a backbone and a ``score`` head, called on token
ids); a ranker-based reward (judge, verifier) is what ``train_grpo`` (GRPO or RLOO) is for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from pydantic import NonNegativeFloat, model_validator

from tuna_open.train.padding import ensure_pad_token
from tuna_open.train.scaffold import train_into
from tuna_open.train.settings import TrainSettings
from tuna_open.train.trl_config import trl_args

if TYPE_CHECKING:
    from trl.experimental.ppo import PPOConfig, PPOTrainer

HISTORY_FIELDS = {
    "reward": "objective/scores",
    "kl": "objective/kl",
    "policy_loss": "loss/policy_avg",
    "value_loss": "loss/value_avg",
    "learning_rate": "lr",
}


class PPOSettings(TrainSettings):
    learning_rate: NonNegativeFloat = 3e-6
    total_episodes: int | None = None
    """Prompts to roll out in all; None: ``num_train_epochs`` passes over the prompts. ``max_steps`` > 0 overrides both
    (that many rollout batches of ``per_device_train_batch_size × gradient_accumulation_steps`` prompts)."""
    num_ppo_epochs: int = 4
    """Optimisation passes over each rollout batch."""
    num_mini_batches: int = 1
    local_rollout_forward_batch_size: int = 64
    """Prompts per no-grad generation/scoring forward during rollout."""
    response_length: int = 128
    max_prompt_length: int = 512
    """Prompts with more tokens are dropped (counted as ``prompts_dropped``): cutting either end of a templated
    prompt would remove the instruction or the ``### Response:`` cue."""
    temperature: float = 0.7
    kl_coef: float = 0.05
    missing_eos_penalty: float | None = None
    """Subtracted from the score of a response that hit ``response_length`` without EOS."""
    vf_coef: float = 0.1
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    whiten_rewards: bool = False

    not_for_trl: ClassVar[frozenset[str]] = TrainSettings.not_for_trl | {"max_prompt_length"}
    """``max_prompt_length`` filters the prompts here; TRL's PPO has no such field."""

    def trl_config_class(self) -> type["PPOConfig"]:
        from trl.import_utils import suppress_experimental_warning

        with suppress_experimental_warning():  # deliberate, as in build_ppo_trainer
            from trl.experimental.ppo import PPOConfig

        return PPOConfig

    @model_validator(mode="after")
    def _no_bf16(self) -> "PPOSettings":
        if self.bf16:
            # TRL 1.12's PPOTrainer builds its own Accelerator without the args' mixed precision: it would silently
            # train in fp32, so refuse rather than pretend.
            raise ValueError("bf16 is not supported by TRL's experimental PPOTrainer (it would silently run fp32)")
        return self


def build_ppo_trainer(policy_path: str, reward_model_path: str, prompts: Sequence[str], settings: PPOSettings,
                      workdir: str | Path) -> "PPOTrainer":
    """A ready ``PPOTrainer`` (with the save workaround applied) over the prompts that fit ``max_prompt_length``."""
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        set_seed,
    )
    from trl.import_utils import suppress_experimental_warning

    with suppress_experimental_warning():  # deliberate: PPO lives only in trl.experimental, pinned to TRL 1.12
        from trl.experimental.ppo import PPOTrainer

    set_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    # PPO finds a response's end as the first pad token, so pad must not be EOS: a policy that did not come from
    # this project's SFT may lack a distinct one, and gets it here (its models are resized once loaded, below).
    ensure_pad_token(tokenizer)
    _check_same_vocab(tokenizer, reward_model_path)
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    dataset = Dataset.from_list([{"input_ids": x} for x in ids if len(x) <= settings.max_prompt_length])
    rollout_batch = settings.per_device_train_batch_size * settings.gradient_accumulation_steps
    if len(dataset) < rollout_batch:
        # TRL's dataloader drops the last partial batch and cycles forever: too few prompts would hang, not fail.
        raise ValueError(f"PPO needs at least {rollout_batch} prompts within max_prompt_length "
                         f"(per_device_train_batch_size × gradient_accumulation_steps), got {len(dataset)}")
    if settings.max_steps > 0:
        total_episodes = settings.max_steps * rollout_batch
    else:
        total_episodes = settings.total_episodes or int(settings.num_train_epochs * len(dataset))
    args = trl_args(settings, Path(workdir), total_episodes=total_episodes, stop_token="eos",
                    num_sample_generations=0)
    policy, ref_model = (AutoModelForCausalLM.from_pretrained(policy_path) for _ in range(2))
    reward_model, value_model = (AutoModelForSequenceClassification.from_pretrained(reward_model_path, num_labels=1)
                                 for _ in range(2))
    ensure_pad_token(tokenizer, policy, ref_model, reward_model, value_model)
    left_padding = AutoTokenizer.from_pretrained(policy_path, padding_side="left")
    ensure_pad_token(left_padding)
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_model,
        reward_model=reward_model,
        value_model=value_model,
        train_dataset=dataset,
        # Left padding: PPO appends generated tokens after the padded prompt batch, so prompts must end flush
        # right. Only the collator pads; the tokenizer that is saved with the policy keeps its own padding side.
        data_collator=DataCollatorWithPadding(left_padding),
    )
    _fix_save(trainer)
    return trainer


# --- WORKAROUND (transformers >= 5.19 with trl.experimental.ppo in TRL 1.12) ------------------------------------
# ``Trainer._save`` reads ``self.is_distributed_loading_by_transformers``, an attribute ``Trainer.__init__`` sets.
# ``PPOTrainer.__init__`` never calls ``Trainer.__init__``, so saving raises AttributeError. With transformers 5.24
# the read is short-circuited on the process that writes (``args.should_save``), so a single-process run saves
# fine, but every other rank of a multi-GPU run crashes in ``save_model``. We set the attribute exactly as
# ``Trainer.__init__`` would. Remove when TRL's PPO initialises it
# (tests/integration/test_trl_baselines.py exercises it).
def _fix_save(trainer: "PPOTrainer") -> None:
    if not hasattr(trainer, "is_distributed_loading_by_transformers"):
        trainer.is_distributed_loading_by_transformers = getattr(
            trainer.policy_model, "is_distributed_loading_by_transformers", False)
# --- END WORKAROUND -------------------------------------------------------------------------------------------


def _check_same_vocab(tokenizer: Any, reward_model_path: str) -> None:
    """PPO scores the policy's token ids with the reward model directly: both must share one tokenizer."""
    from transformers import AutoTokenizer

    reward_tokenizer = AutoTokenizer.from_pretrained(reward_model_path)
    ensure_pad_token(reward_tokenizer)  # the same [PAD] the policy's tokenizer got, if neither had one
    if reward_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"reward model {reward_model_path} uses a different tokenizer than the policy; PPO feeds "
                         "policy token ids to the reward model, so train the reward model from the policy's family")


def train_ppo(policy_path: str, reward_model_path: str, prompts: Sequence[str], settings: PPOSettings,
              output_dir: str | Path) -> dict[str, Any]:
    """PPO-train ``policy_path`` against ``reward_model_path`` on templated ``prompts``.

    Saves the final policy as a plain causal LM + tokenizer in ``output_dir`` (atomically). Returns ``history``
    (per rollout batch: ``loss`` = policy loss + vf_coef × value loss, the objective TRL minimises; reward-model
    score; KL to the reference; learning rate), ``train_seconds``, ``examples`` and ``prompts_dropped``.
    """
    result = train_into(output_dir, settings, HISTORY_FIELDS,
                        lambda workdir: build_ppo_trainer(policy_path, reward_model_path, prompts, settings, workdir),
                        quiet_stdout=True,  # TRL's PPO loop prints a banner; the stage prints its own summary
                        extra=lambda trainer: {"prompts_dropped": len(prompts) - len(trainer.train_dataset)})
    for row in result["history"]:
        row["loss"] = row["policy_loss"] + settings.vf_coef * row["value_loss"]
    return result
