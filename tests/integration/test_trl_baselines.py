"""The TRL baselines (DPO, reward model, PPO, GRPO/RLOO) on the tiny local Llama: text conventions, saved
artifacts, the PPO save workaround, and the ranker-backed reward function."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest

from rankers.base import Ranking, RankRequest
from rankers.llm.templates import format_prompt
from tuna_open.distributed import atomic_output_dir
from tuna_open.train.dpo import DPOSettings, build_dpo_trainer, train_dpo
from tuna_open.train.grpo import GRPOSettings, RankerReward, train_grpo
from tuna_open.train.ppo import PPOSettings, build_ppo_trainer, train_ppo
from tuna_open.train.reward import RewardSettings, build_reward_trainer, train_reward
from tuna_open.train.scaffold import log_history

INSTRUCTIONS = ["Add 12 and 30.", "Reverse the list 1 2 3.", "Add 4 and 5.", "Sort 3 1 2.", "Add 7 and 1.",
                "Reverse the list 9 8.", "Add 2 and 2.", "Sort 5 4."]
PROMPTS = [format_prompt(i) for i in INSTRUCTIONS]
# An easy preference: digits over a fixed sentence.
PAIRS = [{"id": str(k), "prompt": p, "chosen": "4 2", "rejected": "The quick brown fox."}
         for k, p in enumerate(PROMPTS)]


class DigitCountRanker:
    """A verifier-style ranker: more digits is better; fails on request ids listed in ``fail_ids``."""

    name = "digits"

    def __init__(self, fail_ids: Sequence[str] = (), with_scores: bool = True) -> None:
        self.fail_ids = set(fail_ids)
        self.with_scores = with_scores
        self.requests: list[RankRequest] = []

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        self.requests.extend(requests)
        out = []
        for r in requests:
            if r.id in self.fail_ids:
                out.append(Ranking.failure("unparseable"))
                continue
            scores = [float(sum(ch.isdigit() for ch in c)) for c in r.candidates]
            order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
            out.append(Ranking(order=order, scores=scores if self.with_scores else None))
        return out


# --- shared plumbing ------------------------------------------------------------------------------------------------

def test_atomic_output_dir_replaces_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed mid-training")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (out / "old.txt").exists()
    with atomic_output_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_log_history_keeps_logging_steps_and_drops_the_summary() -> None:
    entries = [{"loss": 0.7, "rewards/margins": 0.1, "step": 1}, {"loss": 0.5, "rewards/margins": 0.3, "step": 2},
               {"train_loss": 0.6, "train_runtime": 1.0, "step": 2}]
    assert log_history(entries, {"loss": "loss", "margin": "rewards/margins"}) == [
        {"step": 1.0, "loss": 0.7, "margin": 0.1}, {"step": 2.0, "loss": 0.5, "margin": 0.3}]


# --- DPO ----------------------------------------------------------------------------------------------------------

def test_dpo_trains_on_prompt_response_eos_without_chat_template(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = build_dpo_trainer(str(tiny_model_dir), PAIRS[:2], DPOSettings(), tmp_path / "work")
    row = trainer.train_dataset[0]
    assert row["prompt_ids"] == tok(PAIRS[0]["prompt"])["input_ids"]
    assert row["prompt_ids"] + row["chosen_ids"] == tok(PAIRS[0]["prompt"] + "4 2" + tok.eos_token)["input_ids"]
    assert row["rejected_ids"][-1] == tok.eos_token_id
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model


def test_train_dpo_returns_finite_history_and_saves_a_causal_lm(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "dpo"
    settings = DPOSettings(learning_rate=1e-3, max_steps=3, per_device_batch_size=4, logging_steps=1)
    result = train_dpo(str(tiny_model_dir), PAIRS, settings, out)
    losses = [h["loss"] for h in result["history"]]
    assert [h["step"] for h in result["history"]] == [1.0, 2.0, 3.0]
    assert all(0 < loss < 10 for loss in losses) and losses[-1] < losses[0]
    assert result["examples"] == len(PAIRS) and result["train_seconds"] > 0
    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    assert not (out / "_trainer").exists()


def test_train_dpo_with_lora_saves_merged_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from tuna_open.train.settings import LoraSettings

    out = tmp_path / "dpo_lora"
    settings = DPOSettings(learning_rate=1e-2, max_steps=2, per_device_batch_size=4, lora=LoraSettings(r=4))
    train_dpo(str(tiny_model_dir), PAIRS, settings, out)
    assert not (out / "adapter_config.json").exists()
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_train_dpo_rejects_no_pairs(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        train_dpo(str(tiny_model_dir), [], DPOSettings(), tmp_path / "dpo")
    assert not (tmp_path / "dpo").exists()


# --- reward model ---------------------------------------------------------------------------------------------------

def test_reward_trainer_scores_prompt_response_eos(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = build_reward_trainer(str(tiny_model_dir), PAIRS[:2], RewardSettings(), tmp_path / "work")
    row = trainer.train_dataset[0]
    assert row["chosen_ids"] == tok(PAIRS[0]["prompt"] + "4 2" + tok.eos_token)["input_ids"]
    assert row["rejected_ids"] == tok(PAIRS[0]["prompt"] + "The quick brown fox." + tok.eos_token)["input_ids"]
    assert trainer.model.config.num_labels == 1 and trainer.model.config.pad_token_id == tok.pad_token_id


def _margins(model_dir: Path, tokenizer_dir: Path, pairs: list[dict]) -> list[float]:
    """score(prompt + chosen + EOS) - score(prompt + rejected + EOS), one sequence at a time (no padding)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    set_seed(0)  # the untrained baseline gets the same random score head TRL's init drew
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1).eval()

    def score(text: str) -> float:
        with torch.no_grad():
            return model(**tok(text + tok.eos_token, return_tensors="pt")).logits[0, 0].item()

    return [score(p["prompt"] + p["chosen"]) - score(p["prompt"] + p["rejected"]) for p in pairs]


def test_train_reward_learns_an_easy_preference(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "rm"
    train, held_out = PAIRS[:6], PAIRS[6:]
    settings = RewardSettings(learning_rate=1e-3, max_steps=12, per_device_batch_size=3, logging_steps=1)
    result = train_reward(str(tiny_model_dir), train, settings, out)
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    before = _margins(tiny_model_dir, tiny_model_dir, held_out)
    after = _margins(out, out, held_out)
    assert all(m > 0 for m in after), after
    assert sum(after) > sum(before) + 0.5, (before, after)


# --- PPO ------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reward_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) sequence-classification reward model with the policy's tokenizer: PPO only needs a score."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    out = tmp_path_factory.mktemp("reward_model")
    set_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


PPO_SETTINGS = PPOSettings(learning_rate=1e-4, max_steps=2, per_device_batch_size=2, num_ppo_epochs=1,
                           response_length=8, logging_steps=1)


def test_train_ppo_updates_and_saves_a_loadable_causal_lm(tiny_model_dir: Path, reward_model_dir: Path,
                                                          tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "ppo"
    result = train_ppo(str(tiny_model_dir), str(reward_model_dir), PROMPTS[:4], PPO_SETTINGS, out)
    assert [h["step"] for h in result["history"]] == [1.0, 2.0]
    assert all(torch.isfinite(torch.tensor([h["loss"], h["reward"], h["kl"]])).all() for h in result["history"])
    assert result["prompts_dropped"] == 0
    policy = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.padding_side == AutoTokenizer.from_pretrained(tiny_model_dir).padding_side
    assert policy.generation_config.eos_token_id == tok.eos_token_id
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert any(not torch.equal(start[k], v) for k, v in policy.state_dict().items())


def test_ppo_save_works_on_non_writer_ranks(tiny_model_dir: Path, reward_model_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The marked workaround in ppo.py: without it, ``save_model`` on a rank with ``should_save=False`` (every rank
    but the writer in multi-GPU runs) raises AttributeError on ``is_distributed_loading_by_transformers``."""
    trainer = build_ppo_trainer(str(tiny_model_dir), str(reward_model_dir), PROMPTS[:2], PPO_SETTINGS,
                                tmp_path / "work")
    monkeypatch.setattr(type(trainer.args), "should_save", property(lambda self: False))
    trainer.save_model(str(tmp_path / "saved"))  # a non-writer rank: returns without writing
    assert not (tmp_path / "saved").exists()
    del trainer.is_distributed_loading_by_transformers  # the bug the workaround fixes is still there upstream
    with pytest.raises(AttributeError, match="is_distributed_loading_by_transformers"):
        trainer.save_model(str(tmp_path / "saved"))


def test_ppo_needs_a_full_rollout_batch_of_prompts(tiny_model_dir: Path, reward_model_dir: Path,
                                                   tmp_path: Path) -> None:
    settings = PPO_SETTINGS.model_copy(update={"per_device_train_batch_size": 4, "max_prompt_length": 40})
    # Too few prompts would make TRL's drop-last dataloader cycle forever; long prompts are dropped, not cut.
    with pytest.raises(ValueError, match="at least 4 prompts.*got 1"):
        build_ppo_trainer(str(tiny_model_dir), str(reward_model_dir), [PROMPTS[0], PROMPTS[1], "Add 1 and 2."],
                          settings, tmp_path / "work")


def test_ppo_rejects_a_reward_model_with_another_tokenizer(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tuna_open.builtin.model import BUILTIN_MODELS, init_model, train_tokenizer

    other = tmp_path / "other"
    init_model(BUILTIN_MODELS["student"], train_tokenizer(["completely different text"] * 5, other, 280), other)
    with pytest.raises(ValueError, match="different tokenizer"):
        build_ppo_trainer(str(tiny_model_dir), str(other), PROMPTS, PPO_SETTINGS, tmp_path / "work")


def test_ppo_refuses_settings_it_would_silently_mishandle() -> None:
    with pytest.raises(ValueError, match="bf16"):
        PPOSettings(bf16=True)


@pytest.mark.parametrize("pad", ["none", "eos"])
def test_ppo_adds_a_pad_token_distinct_from_eos(tiny_model_dir: Path, tmp_path: Path, pad: str) -> None:
    """LLaMA-1's tokenizer has no pad token (and TRL would pad with EOS): PPO adds ``[PAD]`` to the tokenizer and
    resizes policy, reference, reward and value models alike, as LMOps's ``smart_tokenizer_and_embedding_resize``."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    base = tmp_path / f"pad_{pad}"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = None if pad == "none" else tok.eos_token
    tok.save_pretrained(base)
    AutoModelForCausalLM.from_pretrained(tiny_model_dir).save_pretrained(base)
    reward = tmp_path / "reward"
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1).save_pretrained(reward)
    tok.save_pretrained(reward)
    assert (tok.pad_token_id is None) == (pad == "none")
    trainer = build_ppo_trainer(str(base), str(reward), PROMPTS, PPO_SETTINGS, tmp_path / "work")
    new = trainer.processing_class
    assert new.pad_token == "[PAD]" and new.pad_token_id == len(tok) != new.eos_token_id
    for model in (trainer.policy_model, trainer.ref_model, trainer.reward_model, trainer.value_model):
        assert model.get_input_embeddings().weight.shape[0] == len(new)
        assert model.config.pad_token_id == new.pad_token_id
    emb = trainer.policy_model.get_input_embeddings().weight
    assert emb[-1].detach().allclose(emb[:-1].detach().mean(0))  # the new row is the mean of the old ones


# --- GRPO / RLOO ----------------------------------------------------------------------------------------------------

def _columns(ids: list[str]) -> dict:
    return {"id": ids, "instruction": [f"task {i}" for i in ids], "input": [""] * len(ids),
            "output": ["42"] * len(ids)}


def test_ranker_reward_ranks_each_prompt_group_together() -> None:
    ranker = DigitCountRanker(fail_ids={"b"})
    reward = RankerReward(ranker)
    logged: dict[str, float] = {}
    completions = ["1", "12", "x", "7", "77", "777", "9"]
    ids = ["a", "a", "b", "b", "c", "c", "a"]  # a later, separate run of "a" is its own group
    rewards = reward(prompts=["p"] * 7, completions=completions, log_metric=logged.__setitem__, **_columns(ids))
    assert rewards == [1.0, 2.0, 0.0, 0.0, 2.0, 3.0, 1.0]
    assert [(r.id, r.candidates) for r in ranker.requests] == [
        ("a", ["1", "12"]), ("b", ["x", "7"]), ("c", ["77", "777"]), ("a", ["9"])]
    assert ranker.requests[0].prompt == "task a" and ranker.requests[0].reference == "42"
    assert (reward.groups, reward.failed_groups) == (4, 1)
    assert logged == {"ranker/failed_fraction": 0.25}
    assert reward.__name__ == "ranker_digits"


def test_ranker_reward_maps_ranks_when_the_ranker_gives_no_scores() -> None:
    reward = RankerReward(DigitCountRanker(with_scores=False))
    assert reward(prompts=["p"] * 3, completions=["1", "123", "12"], **_columns(["a"] * 3)) == [0.0, 1.0, 0.5]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_train_grpo_with_a_python_ranker(tiny_model_dir: Path, tmp_path: Path, algorithm: str) -> None:
    from transformers import AutoModelForCausalLM

    prompts = [{"id": str(k), "prompt": p, "instruction": i, "input": "", "output": "3"}
               for k, (i, p) in enumerate(zip(INSTRUCTIONS, PROMPTS))]
    ranker = DigitCountRanker(fail_ids={"0"})
    settings = GRPOSettings(algorithm=algorithm, learning_rate=1e-4, max_steps=2, per_device_batch_size=4,
                            num_generations=2, max_completion_length=8, logging_steps=1)
    out = tmp_path / algorithm
    result = train_grpo(str(tiny_model_dir), prompts, ranker, settings, out)
    assert [h["step"] for h in result["history"]] == [1.0, 2.0]
    assert result["ranker_groups"] == 4 and len(ranker.requests) == 4
    assert all(len(r.candidates) == 2 for r in ranker.requests)
    assert result["failed_groups"] == sum(r.id == "0" for r in ranker.requests)
    AutoModelForCausalLM.from_pretrained(out)
