"""The Tuna trainer trained for real: it learns a ranking, LoRA merges, accumulation and checkpointing match."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.tuna_examples import PROMPT, fast_config, ranked_examples, ranking_scores

from tuna_open.train.losses import margin_ranking_loss
from tuna_open.train.tuna_trainer import LoraSettings, train_tuna


def test_training_learns_the_ranking_and_saves_a_plain_model(tiny_model_dir, tmp_path):
    examples = ranked_examples()
    before = ranking_scores(tiny_model_dir, examples)
    out = tmp_path / "tuna"
    result = train_tuna(str(tiny_model_dir), examples, fast_config(), str(out))

    assert result["examples"] == len(examples) and result["train_seconds"] > 0
    history = result["history"]
    assert [h["step"] for h in history] == [2, 4, 6, 8, 10, 12]
    assert {"step", "loss", "rank_loss", "mle_loss", "learning_rate", "pair_accuracy"} <= set(history[0])
    for h in history:
        assert h["loss"] == pytest.approx(h["rank_loss"] + h["mle_loss"], rel=1e-4)
    assert history[-1]["loss"] < 0.75 * history[0]["loss"]

    assert not (tmp_path / "tuna.tmp").exists() and not (out / "trainer").exists()
    after = ranking_scores(out, examples)
    # Every prompt's candidates now score in the taught order, and the k-summed hinge has mostly vanished.
    assert (after[:, 0] > after[:, 1]).all() and (after[:, 1] > after[:, 2]).all()
    assert margin_ranking_loss(after) < 0.25 * margin_ranking_loss(before)


def test_lora_training_with_sft_mix_saves_merged_plain_weights(tiny_model_dir, tmp_path):
    """LoRA plus SFT examples (one-candidate groups batched with three-candidate ones)."""
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    sft = [{"prompt": PROMPT.format(a=i, b=i), "response": str(2 * i)} for i in range(4)]
    result = train_tuna(str(tiny_model_dir), ranked_examples(4), fast_config(max_steps=3, lora=lora, seed=1),
                        str(out), sft_examples=sft)
    assert len(result["history"]) == 1 and result["examples"] == 4
    assert not (out / "adapter_config.json").exists()
    weights, base = load_file(out / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    assert weights.keys() == base.keys()
    changed = {k for k in base if not torch.equal(weights[k], base[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


def test_gradient_accumulation_matches_the_larger_batch_mean(tiny_model_dir, tmp_path):
    """Batch 1 x accumulation 2 trains on the mean of two per-prompt losses; with SGD and equal candidate and
    token counts per prompt that is exactly batch 2 x accumulation 1, and the logged loss agrees too."""
    from safetensors.torch import load_file

    examples = [{"prompt": PROMPT.format(a=i, b=i), "candidates": [str(i), str(i + 1)]} for i in range(1, 3)]
    runs = {}
    for name, (batch, accumulation) in {"acc": (1, 2), "batch": (2, 1)}.items():
        config = fast_config(per_device_batch_size=batch, gradient_accumulation_steps=accumulation, max_steps=1,
                             logging_steps=1, optim="sgd", learning_rate=0.5)
        result = train_tuna(str(tiny_model_dir), examples, config, str(tmp_path / name))
        runs[name] = (result["history"][0]["loss"], load_file(tmp_path / name / "model.safetensors"))
    assert runs["acc"][0] == pytest.approx(runs["batch"][0], rel=1e-5)
    for key, value in runs["batch"][1].items():
        torch.testing.assert_close(runs["acc"][1][key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_activation_checkpointing_trains_identically(tiny_model_dir, tmp_path):
    """Recomputing the decoder in backward (Trainer's activation checkpointing) must not change the Tuna step.

    That it recomputed is checked too: with checkpointing every decoder layer's MLP is entered twice per step
    (forward, then again in backward), so a setting that silently did nothing would fail here instead of passing
    trivially. A pre-hook counts entries: the recompute stops early, once it has what backward needs, so the MLP
    never returns from it and a forward (post) hook would not see it.
    """
    from safetensors.torch import load_file
    from torch.nn.modules.module import register_module_forward_pre_hook
    from transformers.models.llama.modeling_llama import LlamaMLP

    calls = {"n": 0}

    def count(module, args):
        calls["n"] += isinstance(module, LlamaMLP)

    runs, mlp_calls = {}, {}
    handle = register_module_forward_pre_hook(count)
    try:
        for flag in (False, True):
            out = tmp_path / f"gc{int(flag)}"
            # Both runs on the per-candidate path (checkpointing takes it anyway): the counts compare one path.
            config = fast_config(max_steps=2, logging_steps=1, gradient_checkpointing=flag, shared_prefix=False)
            calls["n"] = 0
            runs[flag] = (train_tuna(str(tiny_model_dir), ranked_examples(4), config, str(out))["history"],
                          load_file(out / "model.safetensors"))
            mlp_calls[flag] = calls["n"]
    finally:
        handle.remove()
    # Each backward pass recomputes every MLP once: the step's own, plus the two that measure the gradient norm of
    # each loss term (``grad_norm/*``) on the first micro-batch of every logging window (here: every step).
    assert mlp_calls[True] == (1 + 3) * mlp_calls[False] > 0, mlp_calls
    for a, b in zip(runs[False][0], runs[True][0]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for key, value in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_shared_prefix_trains_like_the_per_candidate_path(tiny_model_dir, tmp_path, caplog):
    """The trainer's default path (each prompt once) and the per-candidate path give the same history and weights
    (to float32 rounding); the default really took the shared path (no fallback warning)."""
    import logging

    from safetensors.torch import load_file

    runs = {}
    with caplog.at_level(logging.WARNING, logger="tuna_open.train.shared_prefix"):
        for flag in (True, False):
            out = tmp_path / f"shared{int(flag)}"
            history = train_tuna(str(tiny_model_dir), ranked_examples(4), fast_config(max_steps=2, logging_steps=1,
                                 shared_prefix=flag), str(out))["history"]
            runs[flag] = (history, load_file(out / "model.safetensors"))
    warnings = [r.getMessage() for r in caplog.records if "without prefix sharing" in r.getMessage()]
    assert warnings == ["Tuna step without prefix sharing: shared_prefix is off"]
    for a, b in zip(runs[True][0], runs[False][0]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for key, value in runs[True][1].items():
        # float32 sums in another order, through Adam (which scales tiny gradients up to whole steps): within 1%
        # of one step of lr 3e-3 (seen: 5e-6 on lm_head), far from any real difference in what was trained.
        diff = float((value - runs[False][1][key]).abs().max())
        assert diff <= 3e-5, (key, diff)
