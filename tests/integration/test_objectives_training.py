"""The ranking objectives inside the Tuna trainer and stage: scores reaching the loss, the reference computed once
from the starting model, the per-step diagnostics, and the one-line error when a ranking lacks scores."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.tuna_examples import PROMPT, fast_config, ranked_examples

import tuna_open.train.tuna_trainer as tuna_trainer
from tuna_open.errors import UserError
from tuna_open.stages.train_tuna import Config, require_scores
from tuna_open.stages.train_tuna import ranked_examples as stage_examples
from tuna_open.train.losses import tuna_loss
from tuna_open.train.tuna_data import TunaCollator
from tuna_open.train.tuna_trainer import LoraSettings, _groups, train_tuna


def scored_examples(count: int = 6) -> list[dict]:
    return [{**e, "scores": [1.0, 0.5, 0.0]} for e in ranked_examples(count)]


def test_ranked_examples_carry_the_rankers_scores_best_first():
    candidates = [{"id": "a", "prompt": "P", "candidates": ["w", "right", "half"]}]
    [ex] = stage_examples(candidates, [{"id": "a", "order": [1, 2, 0], "scores": [0.0, 1.0, 0.4]}])
    assert ex["candidates"] == ["right", "half", "w"] and ex["scores"] == [1.0, 0.4, 0.0]
    [bare] = stage_examples(candidates, [{"id": "a", "order": [1, 2, 0]}])
    assert "scores" not in bare


@pytest.mark.parametrize("objective,margin_scale,needs", [
    ("listnet", "rank", True), ("lipo", "rank", True), ("margin", "score", True), ("margin", "rank", False),
    ("plackett_luce", "rank", False), ("dpo_pl", "rank", False), ("rrhf", "rank", False)])
def test_objectives_needing_scores_fail_with_one_line_naming_the_stage(objective, margin_scale, needs):
    cfg = Config(name="tuna_x", kind="train_tuna", model="@sft", rankings="@order_only",
                 train={"objective": objective, "margin_scale": margin_scale})
    unscored = ranked_examples(2)
    if not needs:
        require_scores(cfg, unscored)
        return
    with pytest.raises(UserError) as err:
        require_scores(cfg, unscored)
    message = str(err.value)
    assert "\n" not in message and "tuna_x" in message and "@order_only" in message
    assert (objective if objective != "margin" else "margin_scale: score") in message
    require_scores(cfg, scored_examples(2))  # scored rankings pass


def test_library_entry_refuses_unscored_examples_for_a_scoring_objective(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="ranker's scores"):
        _groups(tok, ranked_examples(2), None, fast_config(objective="listnet"))
    ranked, _ = _groups(tok, scored_examples(2), None, fast_config(objective="listnet"))
    assert ranked[0]["scores"] == [1.0, 0.5, 0.0] and ranked[0]["ref_logps"] == [0.0] * 3


def test_collator_pads_scores_and_reference_log_probs():
    groups = [{"input_ids": [[5, 6, 7], [5, 6]], "labels": [[-100, 6, 7], [-100, 6]], "tiers": [0, 1],
               "mle": [True, True], "scores": [0.9, 0.1], "ref_logps": [-3.0, -4.0]},
              {"input_ids": [[8, 9, 10]], "labels": [[-100, 9, 10]], "tiers": [0], "mle": [True]}]
    batch = TunaCollator(pad_token_id=0)(groups)
    torch.testing.assert_close(batch["ranker_scores"], torch.tensor([[0.9, 0.1], [0.0, 0.0]]))
    torch.testing.assert_close(batch["ref_logps"], torch.tensor([[-3.0, -4.0], [0.0, 0.0]]))


def test_objective_settings_are_validated():
    with pytest.raises(ValueError):
        fast_config(objective="ranknet")
    with pytest.raises(ValueError):
        fast_config(beta=0)


DIAGNOSTICS = {"logps/rank_1", "logps/rank_2", "logps/rank_3", "pair_accuracy", "grad_norm/rank", "grad_norm/mle"}


def test_reference_is_the_starting_model_computed_once(tiny_model_dir, tmp_path, monkeypatch):
    """dpo_pl at step 1: the student is still the reference, so every implicit reward is 0 and the
    Plackett–Luce term of three strictly ranked candidates is log 3 + log 2 = log 6 on every prompt, exactly
    when the reference pass used the same numerics as training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls = []
    fill = tuna_trainer._fill_reference_logps
    monkeypatch.setattr(tuna_trainer, "_fill_reference_logps",
                        lambda trainer, groups, size: calls.append(groups) or fill(trainer, groups, size))
    config = fast_config(objective="dpo_pl", max_steps=4, logging_steps=1, learning_rate=1e-3)
    result = train_tuna(str(tiny_model_dir), ranked_examples(8), config, str(tmp_path / "out"))
    assert len(calls) == 1
    history = result["history"]
    assert history[0]["rank_loss"] == pytest.approx(math.log(6), rel=1e-5)
    assert history[-1]["rank_loss"] != pytest.approx(math.log(6), rel=1e-5)  # it learns away from the reference
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    groups = calls[0]
    with torch.no_grad():
        want = tuna_loss(model, **{k: v for k, v in TunaCollator(tok.pad_token_id)(groups).items()
                                   if k in ("input_ids", "attention_mask", "labels")}).logps
    torch.testing.assert_close(torch.tensor([g["ref_logps"] for g in groups]), want)
    for row in history:
        assert DIAGNOSTICS <= row.keys()
        assert 0.0 <= row["pair_accuracy"] <= 1.0 and row["grad_norm/rank"] > 0 and row["grad_norm/mle"] > 0
        assert row["logps/rank_1"] < 0


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_reference_pass_takes_the_training_path(tiny_model_dir, tmp_path, monkeypatch, shared_prefix):
    """The reference log-probs go through the trainer's own loss path: each prompt computed once where training
    does so (one shared-prefix call per reference batch before the first step), the per-candidate path where it
    is off."""
    import tuna_open.train.shared_prefix as shared

    calls = []
    fill, real = tuna_trainer._fill_reference_logps, shared.shared_prefix_logprobs
    monkeypatch.setattr(shared, "shared_prefix_logprobs", lambda *a: calls.append("step") or real(*a))

    def counted_fill(trainer, groups, size):
        fill(trainer, groups, size)
        calls.append("reference done")

    monkeypatch.setattr(tuna_trainer, "_fill_reference_logps", counted_fill)
    config = fast_config(objective="dpo_pl", max_steps=1, shared_prefix=shared_prefix)  # batches of 2 prompts
    train_tuna(str(tiny_model_dir), ranked_examples(6), config, str(tmp_path / "out"))
    done = calls.index("reference done")
    assert calls[:done] == (["step"] * 3 if shared_prefix else [])  # 6 prompts in reference batches of 2
    assert calls[done + 1:] == (["step"] if shared_prefix else [])


@pytest.mark.parametrize("objective", ["lipo", "listnet"])
def test_scored_objectives_train_with_lora_accumulation_and_sft_mix(tiny_model_dir, tmp_path, objective):
    """LoRA, gradient accumulation and one-candidate SFT groups in the same batches as scored rankings."""
    from safetensors.torch import load_file

    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    sft = [{"prompt": PROMPT.format(a=i, b=i), "response": str(2 * i)} for i in range(4)]
    config = fast_config(objective=objective, lora=lora, gradient_accumulation_steps=2, max_steps=4,
                         logging_steps=2, learning_rate=1e-2)
    result = train_tuna(str(tiny_model_dir), scored_examples(8), config, str(tmp_path / "out"), sft_examples=sft)
    history = result["history"]
    assert len(history) == 2
    for row in history:
        assert DIAGNOSTICS <= row.keys() and all(math.isfinite(v) for v in row.values())
    weights, base = load_file(tmp_path / "out" / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    assert any(not torch.equal(weights[k], base[k]) for k in base if "q_proj" in k)  # the adapters learned
