"""The shared-prefix Tuna path against the per-candidate path and the paper's full-vocabulary computation: same
loss, scores and gradients on ragged groups, with LoRA and the model's own logits path; the prompt runs once; and
the fallback when the model cannot share its prefix."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers.loss_inputs import gradients, naive_tuna, ranked_batch, tiny_llama

from tuna_open.train.losses import IGNORE_INDEX, tuna_loss
from tuna_open.train.shared_prefix import PrefixSharing, shared_prefix_loss


def shared_prompt_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ranked_batch`` (prompts of 4, 6, 3 tokens; 4, 3, 1 candidates of different lengths) with every candidate
    of a prompt carrying that prompt's tokens, as ``encode_group`` makes them; the second prompt's candidates also
    share their first response token (the shared prefix must still stop at the prompt)."""
    input_ids, attention_mask, labels = ranked_batch()
    for b, prompt_len in enumerate([4, 6, 3]):
        input_ids[b, :, :prompt_len] = input_ids[b, :1, :prompt_len]
    input_ids[1, :3, 6] = input_ids[1, 0, 6]
    labels[1, :3, 6] = input_ids[1, 0, 6]
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    return input_ids, attention_mask, labels


def lora(targets: list[str]):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=targets, init_lora_weights=False))
    return model


MODELS = {"plain": tiny_llama, "lora": lambda: lora(["q_proj", "v_proj"]),
          "lora_head": lambda: lora(["q_proj", "v_proj", "lm_head"])}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_shared_prefix_matches_per_candidate_and_paper_paths(kind):
    model = MODELS[kind]()
    batch = shared_prompt_batch()
    results = []
    for shared in (True, False):
        out = (shared_prefix_loss if shared else tuna_loss)(model, *batch, margin=0.1, mle_weight=0.5, lenpen=0.7)
        out.loss.backward()
        results.append((out, gradients(model)))
    ref_loss, ref_scores = naive_tuna(model, *batch, 0.1, 0.5, 0.7)
    ref_loss.backward()
    ref = gradients(model)
    (shared, grads), (plain, plain_grads) = results
    assert shared.rank_loss.item() > 0 and ref
    for loss in (plain.loss, ref_loss):
        torch.testing.assert_close(shared.loss, loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(shared.scores, ref_scores, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(shared.logps, plain.logps, rtol=1e-10, atol=1e-10)
    assert grads.keys() == ref.keys() == plain_grads.keys()
    # Gradients below the last layer agree to ~3e-8 of their scale (float32 precision, not float64's): seen only
    # on prompt tokens shared by several candidates; cause not pinned down (the loss agrees to 1e-10).
    for name in ref:
        torch.testing.assert_close(grads[name], ref[name], rtol=1e-6, atol=1e-7, msg=name)
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-6, atol=1e-7, msg=name)


def test_each_prompt_runs_once():
    """Token positions through the model: each prompt once plus each candidate's continuation (with the last
    prompt token fed again), not N copies of the prompt; and no position past a group's longest candidate."""
    model = tiny_llama()
    batch = shared_prompt_batch()
    seen: list[int] = []
    model.model.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].numel()))
    shared_prefix_loss(model, *batch)
    _, attention_mask, labels = batch
    expected = 0
    for b, prompt_len in enumerate([4, 6, 3]):
        real = (labels[b, :, 1:] != IGNORE_INDEX).any(-1)
        longest = int(attention_mask[b, real].sum(-1).max())
        expected += (prompt_len - 1) + int(real.sum()) * (longest - prompt_len + 1)
    assert sum(seen) == expected


def test_ragged_prompts_in_one_batch_match_each_alone():
    """Groups of different prompt lengths and candidate counts do not interact: each group's scores equal those
    it gets in a batch of its own."""
    model = tiny_llama()
    input_ids, attention_mask, labels = shared_prompt_batch()
    together = shared_prefix_loss(model, input_ids, attention_mask, labels).logps
    for b in range(2):  # the third group has a single candidate: tuna_loss needs labels, it has them
        alone = shared_prefix_loss(model, input_ids[b:b + 1], attention_mask[b:b + 1], labels[b:b + 1]).logps
        torch.testing.assert_close(together[b:b + 1], alone, rtol=1e-10, atol=1e-10)


def test_gradient_checkpointing_falls_back_once_with_a_warning(caplog):
    model = tiny_llama()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    batch = shared_prompt_batch()
    sharing = PrefixSharing()
    with caplog.at_level(logging.WARNING, logger="tuna_open.train.shared_prefix"):
        first = sharing(model, *batch)
        second = sharing(model, *batch)
    assert not sharing.shared_prefix
    assert len([r for r in caplog.records if "with its whole prompt" in r.getMessage()]) == 1
    first.loss.backward()
    grads = gradients(model)
    plain = tuna_loss(model, *batch)
    plain.loss.backward()
    torch.testing.assert_close(first.loss, plain.loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(second.loss, plain.loss, rtol=1e-10, atol=1e-10)
    for name, grad in gradients(model).items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-8, atol=1e-10, msg=name)


def test_a_reason_disables_prefix_sharing_from_the_start(caplog, monkeypatch):
    calls: list[bool] = []
    monkeypatch.setattr("tuna_open.train.shared_prefix.tuna_loss",
                        lambda *args, label_logprobs=None, **kwargs: calls.append(label_logprobs is not None))
    with caplog.at_level(logging.WARNING, logger="tuna_open.train.shared_prefix"):
        sharing = PrefixSharing("weights are sharded")
        sharing(None)
    assert calls == [False] and not sharing.shared_prefix
    assert "weights are sharded" in caplog.text
    PrefixSharing()(None)
    assert calls == [False, True]


def test_shared_prefix_key_leaves_the_dump_at_its_default():
    """A recipe that does not set it keeps its fingerprint; turning it off is recorded."""
    from tuna_open.train.tuna_trainer import TunaTrainConfig

    assert "shared_prefix" not in TunaTrainConfig().model_dump()
    assert TunaTrainConfig(shared_prefix=False).model_dump()["shared_prefix"] is False
