"""The ranking objectives against naive per-pair / per-permutation versions (values and gradients) on ragged
candidate lists with ties, and through ``tuna_loss`` (chunked head vs the full-vocabulary computation)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tuna_open.stages.train_tuna import score_tiers
from tuna_open.train.losses import IGNORE_INDEX, margin_ranking_loss, tuna_loss
from tuna_open.train.objectives import (
    RankingObjective,
    lipo_loss,
    listnet_loss,
    plackett_luce_loss,
    rrhf_loss,
    score_positions,
)

NAMES = ["margin", "listnet", "plackett_luce", "lipo", "dpo_pl", "rrhf"]


def objective(name: str, margin_scale: str = "rank", **overrides) -> RankingObjective:
    settings = {"margin": 0.1, "margin_scale": margin_scale, "beta": 0.5, "temperature": 0.7,
                "target_temperature": 0.3}
    return RankingObjective(name, **{**settings, **overrides})


def ragged_batch(seed: int, batch: int = 6, n: int = 5, garbage: float = 1e4) -> dict[str, torch.Tensor]:
    """Prompts with 1..n candidates (the rest padding, whose values are garbage that must not leak), ranker scores
    sorted best→worst with ties (rounded), and tiers from them as the stage makes them."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, n + 1, (batch,), generator=gen)
    lengths[0], lengths[1] = n, 1
    mask = torch.arange(n)[None, :] < lengths[:, None]
    ranker = torch.randint(0, 3, (batch, n), generator=gen).double().sort(-1, descending=True).values
    ranker[2] = torch.tensor([2.0, 1.0, 1.0, 0.0, 0.0])[:n]  # ties inside and at the end of a full list
    tiers = torch.tensor([score_tiers(row.tolist()) for row in ranker])
    def noise() -> torch.Tensor:
        return torch.randn(batch, n, generator=gen, dtype=torch.float64).masked_fill(~mask, garbage)
    return {"scores": (noise() - 1.5).requires_grad_(), "logps": (noise() * 3 - 10).requires_grad_(),
            "ref_logps": noise() * 3 - 10, "ranker_scores": ranker.masked_fill(~mask, garbage), "mask": mask,
            "tiers": tiers}


def real_indices(mask: torch.Tensor, b: int) -> list[int]:
    return [i for i in range(mask.shape[1]) if mask[b, i]]


def naive_pairs(mask: torch.Tensor, tiers: torch.Tensor, b: int) -> list[tuple[int, int]]:
    """(better, worse) positions: every pair of real candidates in different tiers, better first."""
    idx = real_indices(mask, b)
    return [(i, j) for i, j in itertools.combinations(idx, 2) if tiers[b, i] != tiers[b, j]]


def prompt_mean(terms: list[torch.Tensor | None]) -> torch.Tensor:
    """Mean over the prompts that have a term (None: the prompt has no ranking)."""
    kept = [t for t in terms if t is not None]
    return sum(kept) / len(kept) if kept else torch.zeros((), dtype=torch.float64)


def naive_margin(x: dict, margin: float, positions: list[list[float]]) -> torch.Tensor:
    """The paper's definition with a per-pair gap: Σ_k mean over valid (i, i+k) of max(0, s_{i+k} - s_i + m·gap)."""
    s, mask, tiers = x["scores"], x["mask"], x["tiers"]
    total = torch.zeros((), dtype=torch.float64)
    for k in range(1, s.shape[1]):
        terms = [torch.clamp(s[b, i + k] - s[b, i] + margin * (positions[b][i + k] - positions[b][i]), min=0)
                 for b in range(s.shape[0]) for i in range(s.shape[1] - k)
                 if mask[b, i] and mask[b, i + k] and tiers[b, i] != tiers[b, i + k]]
        if terms:
            total = total + sum(terms) / len(terms)
    return total


def naive_positions(x: dict) -> list[list[float]]:
    out = []
    for b in range(x["mask"].shape[0]):
        idx = real_indices(x["mask"], b)
        r = [float(x["ranker_scores"][b, i]) for i in idx]
        spread = max(r) - min(r)
        row = [(len(r) - 1) * (max(r) - v) / spread if spread else 0.0 for v in r]
        out.append(row + [0.0] * (x["mask"].shape[1] - len(row)))
    return out


def naive_listnet(x: dict, tau_s: float, tau_r: float) -> torch.Tensor:
    terms = []
    for b in range(x["mask"].shape[0]):
        idx = real_indices(x["mask"], b)
        if len(idx) < 2:
            terms.append(None)
            continue
        weights = [math.exp(float(x["ranker_scores"][b, i]) / tau_r) for i in idx]
        log_norm = torch.log(sum(torch.exp(x["scores"][b, i] / tau_s) for i in idx))
        terms.append(-sum(w / sum(weights) * (x["scores"][b, i] / tau_s - log_norm) for w, i in zip(weights, idx)))
    return prompt_mean(terms)


def naive_plackett_luce(values: torch.Tensor, mask: torch.Tensor, tiers: torch.Tensor) -> torch.Tensor:
    """Term by term: each candidate against itself plus everything in a strictly worse tier below it."""
    terms = []
    for b in range(mask.shape[0]):
        pairs = naive_pairs(mask, tiers, b)
        winners = sorted({i for i, _ in pairs})
        if not winners:
            terms.append(None)
            continue
        total = torch.zeros((), dtype=torch.float64)
        for i in winners:
            below = [j for a, j in pairs if a == i]
            total = total - (values[b, i] - torch.log(torch.exp(values[b, i])
                                                      + sum(torch.exp(values[b, j]) for j in below)))
        terms.append(total)
    return prompt_mean(terms)


def naive_lipo(z: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, tiers: torch.Tensor) -> torch.Tensor:
    numerator, denominator = torch.zeros((), dtype=torch.float64), 0.0
    for b in range(mask.shape[0]):
        idx = real_indices(mask, b)
        # The student's own ranking, ties broken by position.
        by_reward = sorted(idx, key=lambda i: (-float(z[b, i].detach()), i))
        rank = {i: by_reward.index(i) + 1 for i in idx}
        for i, j in naive_pairs(mask, tiers, b):
            gain = abs((2 ** float(labels[b, i]) - 1) - (2 ** float(labels[b, j]) - 1))
            delta = gain * abs(1 / math.log2(1 + rank[i]) - 1 / math.log2(1 + rank[j]))
            numerator = numerator + delta * -torch.log(torch.sigmoid(z[b, i] - z[b, j]))
            denominator += delta
    return numerator / denominator


def naive_rrhf(x: dict) -> torch.Tensor:
    terms = []
    for b in range(x["mask"].shape[0]):
        pairs = naive_pairs(x["mask"], x["tiers"], b)
        terms.append(sum(torch.clamp(x["scores"][b, j] - x["scores"][b, i], min=0) for i, j in pairs)
                     if pairs else None)
    return prompt_mean(terms)


def naive(name: str, x: dict, obj: RankingObjective, margin_scale: str = "rank") -> torch.Tensor:
    n = x["mask"].shape[1]
    if name == "margin":
        positions = [list(map(float, range(n)))] * x["mask"].shape[0] if margin_scale == "rank" else naive_positions(x)
        return naive_margin(x, obj.margin, positions)
    if name == "listnet":
        return naive_listnet(x, obj.temperature, obj.target_temperature)
    if name == "plackett_luce":
        return naive_plackett_luce(x["scores"] / obj.temperature, x["mask"], x["tiers"])
    if name == "rrhf":
        return naive_rrhf(x)
    z = obj.beta * (x["logps"] - x["ref_logps"])
    if name == "dpo_pl":
        return naive_plackett_luce(z, x["mask"], x["tiers"])
    return naive_lipo(z, x["ranker_scores"], x["mask"], x["tiers"])


CASES = [(name, "rank") for name in NAMES] + [("margin", "score")]


@pytest.mark.parametrize("name,margin_scale", CASES)
@pytest.mark.parametrize("seed", range(4))
def test_objective_matches_naive_value_and_gradient(name, margin_scale, seed):
    x = ragged_batch(seed)
    obj = objective(name, margin_scale)
    got = obj(x["scores"], x["logps"], x["mask"], tiers=x["tiers"], ranker_scores=x["ranker_scores"],
              ref_logps=x["ref_logps"])
    want = naive(name, x, obj, margin_scale)
    torch.testing.assert_close(got, want)
    got_grads = torch.autograd.grad(got, [x["scores"], x["logps"]], allow_unused=True)
    want_grads = torch.autograd.grad(want, [x["scores"], x["logps"]], allow_unused=True)
    for g, w in zip(got_grads, want_grads):
        if w is None:
            assert g is None or not g.any()
            continue
        assert g is not None and torch.isfinite(g).all()  # garbage in padding leaks nowhere
        torch.testing.assert_close(g, w)
    assert any(w is not None and w.abs().sum() > 0 for w in want_grads)  # the case exercises a gradient


def test_plackett_luce_without_ties_is_the_permutation_likelihood():
    """Without ties the term is -log P_PL(order); the PL probabilities of all orders sum to one."""
    values = torch.tensor([[0.3, -1.0, 0.8, 0.1]], dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)

    def order_probability(perm: tuple[int, ...]) -> float:
        p = 1.0
        for k in range(len(perm)):
            p *= math.exp(values[0, perm[k]]) / sum(math.exp(values[0, j]) for j in perm[k:])
        return p

    assert sum(order_probability(p) for p in itertools.permutations(range(4))) == pytest.approx(1.0)
    assert float(plackett_luce_loss(values, mask)) == pytest.approx(-math.log(order_probability((0, 1, 2, 3))))


def test_ties_state_no_order():
    """Swapping tied candidates changes nothing; a list that is one tier ranks nothing."""
    x = torch.tensor([[0.0, -0.5, -0.1, -2.0]], dtype=torch.float64)
    swapped = x[:, [0, 2, 1, 3]]
    mask, tiers = torch.ones(1, 4, dtype=torch.bool), torch.tensor([[0, 1, 1, 3]])
    labels = torch.tensor([[2.0, 1.0, 1.0, 0.0]])
    for loss in (lambda v: plackett_luce_loss(v, mask, tiers), lambda v: rrhf_loss(v, mask, tiers),
                 lambda v: lipo_loss(v, labels, mask, tiers), lambda v: listnet_loss(v, labels, mask)):
        assert float(loss(x)) == pytest.approx(float(loss(swapped)))
    flat = torch.zeros(1, 4, dtype=torch.long)
    assert float(plackett_luce_loss(x, mask, flat)) == 0.0 and float(rrhf_loss(x, mask, flat)) == 0.0


def test_score_positions_on_the_rank_scale():
    mask = torch.tensor([[True, True, True, True], [True, True, True, False], [True, True, False, False]])
    r = torch.tensor([[3.0, 2.0, 1.0, 0.0], [1.0, 0.9, 0.0, 7.0], [0.5, 0.5, 9.0, 9.0]])
    pos = score_positions(r, mask)
    torch.testing.assert_close(pos[0], torch.arange(4.0))  # evenly spaced scores: the rank positions
    torch.testing.assert_close(pos[1], torch.tensor([0.0, 0.2, 2.0, 0.0]))  # alike candidates: almost no gap
    assert not pos[2].any()  # all tied: no margin anywhere
    # Evenly spaced scores make the score-scaled margin the paper's rank-scaled one.
    s = torch.randn(1, 4)
    assert float(margin_ranking_loss(s, 0.1, mask[:1], None, pos[:1])) == pytest.approx(
        float(margin_ranking_loss(s, 0.1)))


def test_lipo_weights_follow_label_gaps():
    """A pair of nearly equal labels weighs almost nothing next to one far apart: the student misorders (0, 1)
    (z_1 > z_0), which pushes z_1 down, while (1, 2) pulls z_1 up; which wins follows the label gaps."""
    mask, z = torch.ones(1, 3, dtype=torch.bool), torch.tensor([[0.0, 1.0, -1.0]], requires_grad=True)
    close = lipo_loss(z, torch.tensor([[1.0, 0.99, 0.0]]), mask)
    grad_close = torch.autograd.grad(close, z)[0]
    far = lipo_loss(z, torch.tensor([[1.0, 0.0, -0.01]]), mask)
    grad_far = torch.autograd.grad(far, z)[0]
    assert grad_far[0, 1] > 0 > grad_close[0, 1]


def test_objectives_needing_inputs_say_so():
    x = ragged_batch(0)
    with pytest.raises(ValueError, match="ranker's scores"):
        objective("listnet")(x["scores"], x["logps"], x["mask"])
    with pytest.raises(ValueError, match="reference"):
        objective("dpo_pl")(x["scores"], x["logps"], x["mask"])
    assert objective("margin", "score").needs_scores and not objective("margin").needs_scores
    assert objective("lipo").needs_reference and not objective("rrhf").needs_reference


# ---- through tuna_loss: the chunked head and the model's own logits path ----------------------------------------


def full_vocab_logps(model, input_ids, attention_mask, labels, lenpen: float):
    """(scores, summed log-likelihoods, real mask) from full-vocabulary log-softmax over every position."""
    batch, n, length = input_ids.shape
    logits = model(input_ids=input_ids.view(batch * n, length),
                   attention_mask=attention_mask.view(batch * n, length)).logits.view(batch, n, length, -1)
    targets = labels[..., 1:]
    mask = targets != IGNORE_INDEX
    token_logp = torch.log_softmax(logits[..., :-1, :], -1).gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)
    sums = (token_logp * mask).sum(-1)
    return sums / mask.sum(-1).clamp_min(1).double() ** lenpen, sums, mask.any(-1)


@pytest.mark.parametrize("name,margin_scale", CASES)
@pytest.mark.parametrize("plain_head", [True, False])
def test_tuna_loss_with_objective_matches_full_vocabulary(name, margin_scale, plain_head, monkeypatch):
    from helpers.loss_inputs import gradients, ranked_batch, tiny_llama

    import tuna_open.train.losses as losses

    if not plain_head:  # the path LoRA'd, sharded and soft-capped heads take
        monkeypatch.setattr(losses, "_plain_output_head", lambda model: None)
    model = tiny_llama()
    batch = ranked_batch()
    extra = {"tiers": torch.tensor([[0, 1, 1, 2], [0, 1, 2, -1], [0, -1, -1, -1]]),
             "ranker_scores": torch.tensor([[2.0, 1.0, 1.0, 0.0], [1.0, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]),
             "ref_logps": torch.tensor([[-20.0, -25.0, -22.0, -30.0], [-18.0, -21.0, -26.0, 0.0], [-9.0, 0, 0, 0]])}
    obj = objective(name, margin_scale)
    ranking = lambda s, lp, m: obj(s, lp, m, **extra)  # noqa: E731 - the trainer binds the same way
    out = tuna_loss(model, *batch, mle_weight=0.5, lenpen=1.0, ranking=ranking)
    out.loss.backward()
    fast = gradients(model)
    scores, logps, real = full_vocab_logps(model, *batch, lenpen=1.0)
    _, _, labels = batch
    token_mask = labels[..., 1:] != IGNORE_INDEX
    mle = -logps.sum() / token_mask.sum()
    want = obj(scores * real, logps * real, real, **extra) + 0.5 * mle
    want.backward()
    slow = gradients(model)
    torch.testing.assert_close(out.loss, want)
    torch.testing.assert_close(out.logps, logps * real)
    assert fast.keys() == slow.keys()
    for key in slow:
        torch.testing.assert_close(fast[key], slow[key], msg=key)


def test_margin_objective_is_the_paper_loss_bit_for_bit():
    """The default objective goes through the same function with the same arguments: identical bits."""
    from helpers.loss_inputs import gradients, ranked_batch, tiny_llama

    model = tiny_llama(torch.float32)
    batch = ranked_batch()
    tiers = torch.tensor([[0, 1, 1, 2], [0, 1, 2, -1], [0, -1, -1, -1]])
    paper = tuna_loss(model, *batch, tiers=tiers)
    paper.loss.backward()
    paper_grads = gradients(model)
    obj = objective("margin")
    ours = tuna_loss(model, *batch, ranking=lambda s, lp, m: obj(s, lp, m, tiers=tiers))
    ours.loss.backward()
    assert torch.equal(paper.loss, ours.loss) and torch.equal(paper.rank_loss, ours.rank_loss)
    for key, value in gradients(model).items():
        assert torch.equal(value, paper_grads[key]), key


@pytest.mark.parametrize("name", NAMES)
def test_objectives_under_bf16_autocast(name):
    """bf16 autocast (the trainer's mixed precision): finite, and close to float32."""
    from helpers.loss_inputs import ranked_batch, tiny_llama

    model = tiny_llama(torch.float32)
    batch = ranked_batch()
    extra = {"tiers": None, "ranker_scores": torch.tensor([[2.0, 1.0, 0.5, 0.0]] * 3),
             "ref_logps": torch.full((3, 4), -25.0)}
    obj = objective(name)
    ranking = lambda s, lp, m: obj(s, lp, m, **extra)  # noqa: E731
    exact = tuna_loss(model, *batch, ranking=ranking).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = tuna_loss(model, *batch, ranking=ranking).loss
    low.backward()
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert float(low) == pytest.approx(float(exact), rel=0.05, abs=0.05)
