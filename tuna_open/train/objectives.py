"""Ranking terms other than the paper's margin loss, for ``tuna_loss(..., ranking=RankingObjective(...))``.

Issue #19 measured that Tuna's margin ranking term costs accuracy against MLE on the same samples, and named three
properties of it that may be why: (a) it uses only the ranker's order, never its scores; (b) it demands a gap of
``margin·k`` between every ranked pair however alike the two candidates are; (c) it is unanchored (nothing keeps
the student near where it started). Each objective here changes some of these and nothing else, so a benchmark
can say which property mattered:

=================  =====================================================================  ===========  ======
objective          ranking term, per prompt (candidates best→worst)                         (a) scores   (c) ref
=================  =====================================================================  ===========  ======
``margin``         Σ_k mean_{(i,i+k)} max(0, s_{i+k} - s_i + m·k) (the paper; ``losses.py``)  no           no
``margin`` score   the same with m·k replaced by m·(u_{i+k} - u_i), u = scores on rank scale yes          no
``listnet``        CE(softmax(r/τ), softmax(s/τ'))                                           yes          no
``plackett_luce``  -Σ_i log e^{s_i/τ'} / (e^{s_i/τ'} + Σ_{j below i} e^{s_j/τ'})           no           no
``lipo``           Σ_{i≻j} λ_ij·(-log σ(z_i - z_j)) / Σ λ_ij, z = β·(log π - log π_ref)     yes          yes
``dpo_pl``         the Plackett–Luce term over z instead of s/τ'                            no           yes
``rrhf``           Σ_{i≻j} max(0, s_j - s_i)                                                no           no
=================  =====================================================================  ===========  ======

``s`` is the length-normalised log-likelihood (Tuna's sequence score), ``r`` the ranker's score of each candidate
(teacher likelihood, verifier, judge, reward model: higher is better), ``log π`` the summed log-likelihood and
``log π_ref`` the same under the stage's starting model, computed once before training. Pairs and "below" only
count candidates of different tiers (``tiers``: candidates the ranker scored equally state no preference between
them), and padding candidates (``mask`` False) take part in nothing. Every term is a per-prompt quantity averaged
over the prompts that have at least one ranked pair (the margin loss keeps the paper's batch-wide mean per
distance), so a batch mixing in one-candidate SFT groups does not dilute it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from tuna_open.train.losses import margin_ranking_loss
from tuna_open.train.settings import MarginScale, ObjectiveName

REFERENCE_OBJECTIVES: frozenset[str] = frozenset({"lipo", "dpo_pl"})


@dataclass(frozen=True)
class RankingObjective:
    """One ranking term with its settings (the ``train_tuna`` stage's ``train.objective`` and the knobs it reads).

    Called with the batch's sequence scores it returns the ranking term; ``tuna_loss`` adds ``mle_weight``·MLE.
    """

    name: ObjectiveName
    margin: float
    """``margin``: the gap per rank position (the paper: 0.1)."""
    margin_scale: MarginScale
    """``margin``: ``rank`` spaces the required gaps by rank distance (the paper), ``score`` by the ranker's score
    gap rescaled so that best and worst are as far apart as with ``rank`` (``score_positions``)."""
    beta: float
    """``lipo``, ``dpo_pl``: the scale of the implicit reward β·(log π - log π_ref), as in DPO."""
    temperature: float
    """``listnet``, ``plackett_luce``: τ' dividing the student's sequence scores."""
    target_temperature: float
    """``listnet``: τ dividing the ranker's scores in the target distribution."""

    @property
    def needs_scores(self) -> bool:
        """Whether the term reads the ranker's scores, not only its order."""
        return self.name in ("listnet", "lipo") or (self.name == "margin" and self.margin_scale == "score")

    @property
    def needs_reference(self) -> bool:
        """Whether the term reads the starting model's log-likelihoods (``ref_logps``)."""
        return self.name in REFERENCE_OBJECTIVES

    def __call__(self, scores: torch.Tensor, logps: torch.Tensor, mask: torch.Tensor, *,
                 tiers: torch.Tensor | None = None, ranker_scores: torch.Tensor | None = None,
                 ref_logps: torch.Tensor | None = None) -> torch.Tensor:
        """The ranking term of a batch: ``scores`` (length-normalised) and ``logps`` (summed) [B, N] best→worst."""
        if self.needs_scores and ranker_scores is None:
            raise ValueError(f"objective {self.name!r} needs the ranker's scores")
        if self.needs_reference and ref_logps is None:
            raise ValueError(f"objective {self.name!r} needs reference log-probabilities")
        if self.name == "margin":
            positions = None if self.margin_scale == "rank" else score_positions(ranker_scores, mask)
            return margin_ranking_loss(scores, self.margin, mask, tiers, positions)
        if self.name == "listnet":
            return listnet_loss(scores / self.temperature, ranker_scores / self.target_temperature, mask)
        if self.name == "plackett_luce":
            return plackett_luce_loss(scores / self.temperature, mask, tiers)
        if self.name == "rrhf":
            return rrhf_loss(scores, mask, tiers)
        rewards = self.beta * (logps - ref_logps)
        if self.name == "dpo_pl":
            return plackett_luce_loss(rewards, mask, tiers)
        return lipo_loss(rewards, ranker_scores, mask, tiers)


def ranked_pairs(mask: torch.Tensor, tiers: torch.Tensor | None = None) -> torch.Tensor:
    """[B, N, N] bool: candidate i is ranked above candidate j (i before j, both real, different tiers)."""
    n = mask.shape[-1]
    above = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
    pairs = above & mask[:, :, None] & mask[:, None, :]
    if tiers is not None:
        pairs = pairs & (tiers[:, :, None] != tiers[:, None, :])
    return pairs


def score_positions(ranker_scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rank-like positions from scores: u_i = (n - 1)·(r_max - r_i) / (r_max - r_min) over a prompt's n candidates.

    The best candidate sits at 0 and the worst at n - 1, as with rank positions, so ``margin·(u_j - u_i)`` asks for
    the paper's gap between best and worst while candidates the ranker scored alike get (almost) none. Evenly
    spaced scores give the rank positions exactly; a prompt whose scores are all equal gets 0 everywhere.
    """
    r = ranker_scores.to(torch.float32)
    top = torch.where(mask, r, -torch.inf).amax(-1, keepdim=True)
    bottom = torch.where(mask, r, torch.inf).amin(-1, keepdim=True)
    spread = (top - bottom).nan_to_num(0.0)
    n = mask.sum(-1, keepdim=True).to(r.dtype)
    positions = (n - 1) * (top - r) / torch.where(spread > 0, spread, 1.0)
    return torch.where(mask & (spread > 0), positions, 0.0)


def listnet_loss(logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ListNet (Cao et al., 2007, top-one probabilities): -Σ_i softmax(target)_i · log softmax(logits)_i per prompt.

    Cross-entropy between the ranker's distribution over a prompt's candidates and the student's, so a candidate
    the ranker barely prefers is barely preferred, and tied candidates are pulled to equal probability. Prompts
    with fewer than two real candidates carry no ranking and are left out of the mean.
    """
    log_p = torch.where(mask, logits, -torch.inf).log_softmax(-1)
    target = torch.where(mask, target_logits.to(logits.dtype), -torch.inf).softmax(-1)
    per_prompt = -torch.where(mask, target * log_p, 0.0).sum(-1)
    return _mean_over(per_prompt, mask.sum(-1) > 1)


def plackett_luce_loss(logits: torch.Tensor, mask: torch.Tensor, tiers: torch.Tensor | None = None) -> torch.Tensor:
    """Negative Plackett–Luce log-likelihood of the order (ListMLE, Xia et al., 2008; PRO, Song et al., 2024 eq. 3):
    -Σ_i log( e^{x_i} / (e^{x_i} + Σ_{j below i} e^{x_j}) ) per prompt, summed over positions.

    Without ties "below i" is every later candidate and this is exactly -log P_PL(order). Tied candidates are one
    group: each member is compared with everything ranked strictly below the group and with none of its
    tie-mates (a tie states no order), and members of the last group beat nothing and add no term.
    """
    below = ranked_pairs(mask, tiers)
    others = torch.where(below, logits[:, None, :], -torch.inf)
    log_denominator = torch.logsumexp(torch.cat([logits[:, :, None], others], dim=-1), dim=-1)
    has_below = below.any(-1)
    per_prompt = torch.where(has_below, log_denominator - logits, 0.0).sum(-1)
    return _mean_over(per_prompt, has_below.any(-1))


def lipo_loss(rewards: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
              tiers: torch.Tensor | None = None) -> torch.Tensor:
    """LiPO-λ (Liu et al., 2024, eq. 6): Σ_{i≻j} Δ_ij·(-log σ(z_i - z_j)) with the LambdaRank weight
    Δ_ij = |G_i - G_j|·|1/D(τ_i) - 1/D(τ_j)|, G = 2^ψ - 1 (ψ the ranker's score), D(τ) = log2(1 + τ) and τ_i the
    rank of candidate i by the student's own rewards z (detached, 1 = best; ties broken by position).

    Pairs whose labels differ more, and pairs the student currently misorders near the top, weigh more; alike
    candidates weigh almost nothing. The sum is divided by Σ Δ over the batch (the paper sums): the ranker's score
    scale (a verifier's 0/1, a teacher's mean log-probability) would otherwise act as a hidden learning rate.
    """
    pairs = ranked_pairs(mask, tiers)
    z = rewards.detach()
    n = mask.shape[-1]
    earlier = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril(-1)  # [i, j]: j before i
    beats = (z[:, None, :] > z[:, :, None]) | ((z[:, None, :] == z[:, :, None]) & earlier)
    rank = 1 + (beats & mask[:, None, :]).sum(-1).to(rewards.dtype)
    discount = 1.0 / torch.log2(1.0 + rank)
    gain = torch.exp2(labels.to(rewards.dtype)) - 1.0
    weight = ((gain[:, :, None] - gain[:, None, :]).abs() * (discount[:, :, None] - discount[:, None, :]).abs())
    weight = torch.where(pairs, weight, 0.0)
    logistic = -F.logsigmoid(rewards[:, :, None] - rewards[:, None, :])
    return torch.where(pairs, weight * logistic, 0.0).sum() / weight.sum().clamp_min(torch.finfo(weight.dtype).tiny)


def rrhf_loss(scores: torch.Tensor, mask: torch.Tensor, tiers: torch.Tensor | None = None) -> torch.Tensor:
    """RRHF's ranking term (Yuan et al., 2023, eq. 2): Σ_{i≻j} max(0, s_j - s_i) per prompt, summed over pairs.

    A hinge with no margin: a pair the student already orders right adds nothing, however small its gap, where
    the paper's term keeps demanding 0.1·k. RRHF's full loss adds MLE on the best candidate (``mle: best``).
    """
    pairs = ranked_pairs(mask, tiers)
    hinge = (scores[:, None, :] - scores[:, :, None]).clamp_min(0.0)
    per_prompt = torch.where(pairs, hinge, 0.0).sum((-1, -2))
    return _mean_over(per_prompt, pairs.any((-1, -2)))


def _mean_over(per_prompt: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_prompt`` over the ``counted`` prompts (0 when none is)."""
    return torch.where(counted, per_prompt, 0.0).sum() / counted.sum().clamp_min(1)
