"""The Tuna loss: hand-computed ranking values, and the fast ``tuna_loss`` path against the paper's
full-vocabulary computation (scores, values and gradients)."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers.loss_inputs import gradients, naive_tuna, paper_scores, paper_token_logprobs, ranked_batch, tiny_llama

from tuna_open.train.losses import IGNORE_INDEX, margin_ranking_loss, tuna_loss


def brute_force_ranking(scores: torch.Tensor, margin: float, mask: torch.Tensor) -> float:
    """The definition, pair by pair in Python: Σ_k mean over valid (i, i+k) of max(0, s_{i+k} - s_i + margin·k)."""
    batch, n = scores.shape
    total = 0.0
    for k in range(1, n):
        terms = [max(0.0, float(scores[b, i + k] - scores[b, i]) + margin * k)
                 for b in range(batch) for i in range(n - k) if mask[b, i] and mask[b, i + k]]
        total += sum(terms) / len(terms) if terms else 0.0
    return total


def test_ranking_two_candidates_by_hand():
    # Correct order with a gap above the margin: no loss. Wrong order: gap + margin.
    assert float(margin_ranking_loss(torch.tensor([[-1.0, -1.5]]))) == 0.0
    assert float(margin_ranking_loss(torch.tensor([[-1.5, -1.0]]))) == pytest.approx(0.6)


def test_ranking_sums_distances_by_hand():
    # k=1: pairs (0,1) -> 0.05, (1,2) -> 0 => mean 0.025; k=2: (0,2) -> max(0, -0.5 + 0.2) = 0.
    scores = torch.tensor([[0.0, -0.05, -0.5]])
    assert float(margin_ranking_loss(scores, margin=0.1)) == pytest.approx(0.025)
    # A margin of 0.3 makes k=2 active: k=1: (0.25 + 0)/2, k=2: max(0, -0.5 + 0.6) = 0.1.
    assert float(margin_ranking_loss(scores, margin=0.3)) == pytest.approx(0.125 + 0.1)


@pytest.mark.parametrize("n", range(2, 9))
def test_ranking_equal_scores_cost_margin_times_distance(n):
    # Every pair at distance k costs margin·k, so the loss is margin·Σk = margin·n(n-1)/2.
    scores = torch.full((3, n), -2.0)
    assert float(margin_ranking_loss(scores, margin=0.1)) == pytest.approx(0.1 * n * (n - 1) / 2)


@pytest.mark.parametrize("n", range(2, 9))
def test_ranking_matches_definition_with_masks(n):
    gen = torch.Generator().manual_seed(n)
    scores = torch.randn(5, n, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, n + 1, (5,), generator=gen)
    mask = torch.arange(n)[None, :] < lengths[:, None]
    scores = scores.masked_fill(~mask, float("inf"))  # padding scores must not leak into the loss
    assert float(margin_ranking_loss(scores, 0.1, mask)) == pytest.approx(brute_force_ranking(scores, 0.1, mask))


def test_ranking_distance_without_valid_pair_contributes_nothing():
    # N=4 but no ranking longer than 2: only k=1 has pairs, (1.0 - 0.0 + 0.1) and (0 + 0.1) averaged.
    scores = torch.tensor([[0.0, 1.0, 9.0, 9.0], [0.0, 0.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, False, False], [True, True, False, False]])
    assert float(margin_ranking_loss(scores, 0.1, mask)) == pytest.approx((1.1 + 0.1) / 2)


# ---- tuna_loss against the paper's computation on a tiny Llama ------------------------------------------------






@pytest.mark.parametrize("lenpen", [1.0, 0.7])
def test_tuna_loss_matches_full_vocabulary_computation(lenpen):
    model = tiny_llama()
    batch = ranked_batch()
    out = tuna_loss(model, *batch, margin=0.1, mle_weight=0.5, lenpen=lenpen)
    out.loss.backward()
    fast = gradients(model)
    ref_loss, ref_scores = naive_tuna(model, *batch, 0.1, 0.5, lenpen)
    ref_loss.backward()
    ref = gradients(model)

    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.scores, ref_scores, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.loss, out.rank_loss + 0.5 * out.mle_loss)
    assert out.rank_loss.item() > 0 and out.mle_loss.item() > 0
    assert fast.keys() == ref.keys()
    for name in ref:
        torch.testing.assert_close(fast[name], ref[name], rtol=1e-8, atol=1e-10, msg=name)


def test_tuna_loss_model_logits_path_matches_fused_head():
    """A LoRA'd output head is not a plain Linear: the model's own logits path must give the same loss/gradients."""
    from peft import LoraConfig, get_peft_model

    batch = ranked_batch()
    plain = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    lora_head = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "lm_head"]))
    results = []
    for model in (plain, lora_head):
        out = tuna_loss(model, *batch)
        out.loss.backward()
        results.append((out.loss, {n.replace(".default", ""): g for n, g in gradients(model).items()
                                   if "q_proj" in n or "v_proj" in n}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-10, atol=1e-10)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-8, atol=1e-10, msg=name)


def test_tuna_loss_float32_and_frozen_head():
    model = tiny_llama(torch.float32)
    model.lm_head.weight.requires_grad_(False)
    batch = ranked_batch()
    out = tuna_loss(model, *batch, lenpen=1.2)
    out.loss.backward()
    assert model.lm_head.weight.grad is None
    fast = gradients(model)
    ref_loss, _ = naive_tuna(model, *batch, 0.1, 1.0, 1.2)
    ref_loss.backward()
    ref = gradients(model)
    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-5, atol=1e-5)
    for name in ref:
        torch.testing.assert_close(fast[name], ref[name], rtol=1e-3, atol=1e-5, msg=name)


def test_tuna_loss_under_bf16_autocast_follows_the_model():
    """Under autocast the head runs in bf16 like nn.Linear would; the result tracks the fp32 loss."""
    model = tiny_llama(torch.float32)
    batch = ranked_batch()
    exact = tuna_loss(model, *batch).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tuna_loss(model, *batch)
    out.loss.backward()
    assert out.loss.dtype == torch.float32
    assert model.lm_head.weight.grad.dtype == torch.float32
    assert out.loss.item() == pytest.approx(exact, rel=2e-2)


def test_tuna_loss_gradient_is_blind_to_padding_candidates():
    """Changing the tokens of a padding candidate (all labels -100) changes neither the loss nor its gradient."""
    model = tiny_llama()
    input_ids, attention_mask, labels = ranked_batch()
    out = tuna_loss(model, input_ids, attention_mask, labels)
    out.loss.backward()
    before = gradients(model)
    noisy_ids, noisy_mask = input_ids.clone(), attention_mask.clone()
    noisy_ids[2, 1:], noisy_mask[2, 1:] = 5, 1
    again = tuna_loss(model, noisy_ids, noisy_mask, labels)
    again.loss.backward()
    torch.testing.assert_close(again.loss, out.loss, rtol=0, atol=0)
    for name, grad in gradients(model).items():
        torch.testing.assert_close(grad, before[name], rtol=0, atol=0)
    assert (out.scores[2, 1:] == 0).all() and (out.scores[0] < 0).all()


def test_tuna_loss_rejects_a_batch_without_labels():
    model = tiny_llama()
    input_ids, attention_mask, labels = ranked_batch()
    with pytest.raises(ValueError, match="nothing to score"):
        tuna_loss(model, input_ids, attention_mask, torch.full_like(labels, IGNORE_INDEX))


def test_tuna_loss_is_invariant_to_batch_padding():
    """Extra padding columns and padding candidates change nothing (they are trimmed before the forward pass)."""
    model = tiny_llama()
    input_ids, attention_mask, labels = ranked_batch()
    pad = (0, 5, 0, 2)  # 5 more columns, 2 more candidates
    wide = [torch.nn.functional.pad(t, pad, value=v)
            for t, v in zip((input_ids, attention_mask, labels), (0, 0, IGNORE_INDEX))]
    narrow_out, wide_out = tuna_loss(model, input_ids, attention_mask, labels), tuna_loss(model, *wide)
    torch.testing.assert_close(wide_out.loss, narrow_out.loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(wide_out.scores[:, :4], narrow_out.scores)


def test_length_penalty_changes_only_the_ranking_term():
    model = tiny_llama()
    batch = ranked_batch()
    a, b = (tuna_loss(model, *batch, lenpen=p) for p in (1.0, 0.5))
    torch.testing.assert_close(a.mle_loss, b.mle_loss)
    counts = (batch[2][..., 1:] != IGNORE_INDEX).sum(-1).clamp_min(1).double()
    # score at lenpen 0.5 = summed log-likelihood / sqrt(len) = score at lenpen 1 * sqrt(len)
    torch.testing.assert_close(b.scores, a.scores * counts.sqrt())
    assert not torch.isclose(a.rank_loss, b.rank_loss)


@pytest.mark.parametrize("n", [2, 5, 8])
def test_tuna_loss_k_sum_for_various_candidate_counts(n):
    """The ranking term of tuna_loss is margin_ranking_loss of its own scores, for any N."""
    model = tiny_llama()
    gen = torch.Generator().manual_seed(n)
    input_ids = torch.randint(3, 97, (2, n, 9), generator=gen)
    labels = input_ids.clone()
    labels[..., :3] = IGNORE_INDEX
    out = tuna_loss(model, input_ids, torch.ones_like(input_ids), labels, margin=0.2)
    mask = torch.ones(2, n, dtype=torch.bool)
    assert out.rank_loss.item() == pytest.approx(brute_force_ranking(out.scores.detach(), 0.2, mask), rel=1e-10)
    for b, k in itertools.product(range(2), range(1, n)):
        assert out.scores[b, k] < 0


@pytest.mark.parametrize("chunk_tokens, kept_chunks", [(1000, 1), (1000, 0), (5, 0), (5, 2), (5, 100)])
def test_fused_head_kept_and_recomputed_chunks_agree(monkeypatch, chunk_tokens, kept_chunks):
    """Chunks whose probabilities are kept from the forward pass and chunks recomputed in the backward pass give
    the paper's gradients, alone or mixed, and a retained graph gives the same gradients twice."""
    from tuna_open.train import losses

    model = tiny_llama()
    vocab = model.config.vocab_size
    monkeypatch.setattr(losses, "_CHUNK_ELEMENTS", chunk_tokens * vocab)
    monkeypatch.setattr(losses, "_KEEP_PROBS_BYTES", kept_chunks * chunk_tokens * vocab * 8)
    batch = ranked_batch()
    out = tuna_loss(model, *batch)
    out.loss.backward(retain_graph=True)
    first = gradients(model)
    out.loss.backward()
    second = gradients(model)
    ref_loss, _ = naive_tuna(model, *batch, 0.1, 1.0, 1.0)
    ref_loss.backward()
    ref = gradients(model)
    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-10, atol=1e-10)
    for name in ref:
        torch.testing.assert_close(first[name], ref[name], rtol=1e-8, atol=1e-10, msg=name)
        torch.testing.assert_close(second[name], first[name], rtol=0, atol=0, msg=name)


def test_fused_head_with_bias():
    model = tiny_llama()
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True, dtype=torch.float64)
    torch.nn.init.normal_(head.bias)
    model.lm_head = head
    batch = ranked_batch()
    out = tuna_loss(model, *batch)
    out.loss.backward()
    fast = gradients(model)
    ref_loss, _ = naive_tuna(model, *batch, 0.1, 1.0, 1.0)
    ref_loss.backward()
    ref = gradients(model)
    torch.testing.assert_close(out.loss, ref_loss, rtol=1e-10, atol=1e-10)
    assert "lm_head.bias" in fast
    for name in ref:
        torch.testing.assert_close(fast[name], ref[name], rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("n", range(2, 7))
def test_tied_pairs_are_left_out_of_the_ranking(n):
    gen = torch.Generator().manual_seed(100 + n)
    scores = torch.randn(4, n, generator=gen, dtype=torch.float64)
    mask = torch.ones(4, n, dtype=torch.bool)
    tiers = torch.sort(torch.randint(0, 3, (4, n), generator=gen), dim=1).values  # best→worst: tiers ascend

    def brute(b_mask: torch.Tensor) -> float:
        total = 0.0
        for k in range(1, n):
            terms = [max(0.0, float(scores[b, i + k] - scores[b, i]) + 0.1 * k)
                     for b in range(4) for i in range(n - k) if b_mask[b, i, i + k]]
            total += sum(terms) / len(terms) if terms else 0.0
        return total

    pair_ok = tiers[:, :, None] != tiers[:, None, :]
    assert float(margin_ranking_loss(scores, 0.1, mask, tiers)) == pytest.approx(brute(pair_ok))
    all_tied = torch.zeros(4, n, dtype=torch.long)
    assert float(margin_ranking_loss(scores, 0.1, mask, all_tied)) == 0.0
    strict = torch.arange(n).expand(4, n)
    assert float(margin_ranking_loss(scores, 0.1, mask, strict)) == pytest.approx(
        float(margin_ranking_loss(scores, 0.1, mask)))


def test_mle_mask_imitates_only_the_chosen_candidates():
    """MLE over the masked candidates' tokens only, against the full-vocabulary computation; gradients too."""
    model = tiny_llama()
    input_ids, attention_mask, labels = ranked_batch()
    mle_mask = torch.tensor([[True, False, True, False], [False, False, False, False], [True, False, False, False]])
    tiers = torch.tensor([[0, 1, 1, 3], [0, 0, 0, -1], [0, -1, -1, -1]])
    out = tuna_loss(model, input_ids, attention_mask, labels, margin=0.1, mle_weight=1.0, tiers=tiers,
                    mle_mask=mle_mask)
    out.loss.backward()
    fast = gradients(model)

    batch, n, length = input_ids.shape
    logits = model(input_ids=input_ids.view(batch * n, length),
                   attention_mask=attention_mask.view(batch * n, length)).logits.view(batch, n, length, -1)
    token_logp, mask = paper_token_logprobs(logits, labels)
    tokens = mask & mle_mask[..., None]
    mle = -(token_logp * tokens).sum() / tokens.sum()
    ref = margin_ranking_loss(paper_scores(token_logp, mask), 0.1, mask.any(-1), tiers) + mle
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-10)
    for name, grad in gradients(model).items():
        torch.testing.assert_close(fast[name], grad, rtol=1e-8, atol=1e-10, msg=name)
    none = tuna_loss(model, input_ids, attention_mask, labels, mle_mask=torch.zeros_like(mle_mask))
    assert none.mle_loss.item() == 0.0
