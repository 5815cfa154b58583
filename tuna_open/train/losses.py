"""The Tuna objective (Li et al., 2023): margin ranking over length-normalised log-likelihoods plus λ·MLE.

For one prompt with N candidates sorted best→worst, candidate i scores
``s_i = Σ_t log p(y_t | y_<t, prompt) / len_i ** lenpen`` and

    L_rank = Σ_{k=1..N-1} mean over pairs (i, i+k) of max(0, s_{i+k} - s_i + margin·k)
    L      = L_rank + mle_weight · L_MLE

where L_MLE is the mean negative log-likelihood over all label tokens of all candidates (as the paper's code does,
through the model's own LM loss). Two options the paper lacks (off in this function; the ``train_tuna``
stage masks ties by default): pairs the judge scored equally
can be left out of L_rank (``tiers``), and L_MLE can be restricted to chosen candidates (``mle_mask``: the best, as
RRHF does, or those a verifier accepts), since imitating every sample also imitates the wrong ones.

The paper's code materialises full-vocabulary log-probabilities for every candidate token and then lets the model
compute its LM loss over the same logits again: three [tokens x vocab] float tensors in the forward pass and as
many in the backward. ``tuna_loss`` instead

* runs the LM head only where a label is predicted (not on prompt or padding positions, nor on padding
  candidates, which are dropped before the forward pass),
* computes those token log-probabilities in chunks of tokens inside one autograd Function that keeps, besides the
  hidden states and one log-sum-exp per token, only as many chunks' softmax probabilities as fit a fixed budget
  and recomputes the rest in the backward pass (memory O(budget + chunk x vocab), not O(tokens x vocab)), and whose
  backward applies the head's two matmuls to the probabilities without any other vocabulary-wide pass, and
* feeds the ranking and the MLE term from the same token log-probabilities (MLE = -their mean).

Measured with ``benchmarks/tuna_step.py`` (CPU, 4 prompts x 4 candidates x 160 tokens, 32k vocabulary, hidden 256):
0.40-0.44x the paper's step time and 0.30x its peak memory, same loss and gradients.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

IGNORE_INDEX = -100

# Elements (tokens x vocabulary) of one chunk of logits: 4M floats = 16 MiB, small next to any model's weights yet
# large enough that each chunk is a full-width matmul.
_CHUNK_ELEMENTS = 1 << 22

# Softmax probabilities kept from the forward pass, per call: while they fit, the backward pass skips the head's
# recomputation (one of its four matmuls); chunks beyond the budget are recomputed, so memory stays bounded.
# 1 GiB holds 8k label tokens of a 32k vocabulary in float32.
_KEEP_PROBS_BYTES = 1 << 30

# Config attributes of models whose forward transforms the head's output (Gemma 2 soft-capping, Cohere and Granite
# scaling): their log-probabilities are not log_softmax(lm_head(h)), so they take the model's own logits path.
_POST_HEAD_CONFIG_KEYS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


class TunaLossOutput(NamedTuple):
    """``loss`` is what to back-propagate; the components are for logging (all scalars but ``scores``)."""

    loss: torch.Tensor
    rank_loss: torch.Tensor
    mle_loss: torch.Tensor
    scores: torch.Tensor
    """[B, N] length-normalised log-likelihoods; 0 for padding candidates (rows whose labels are all ignored)."""
    logps: torch.Tensor
    """[B, N] summed log-likelihoods (``scores`` before length normalisation; what DPO-style terms compare)."""


def margin_ranking_loss(scores: torch.Tensor, margin: float = 0.1, mask: torch.Tensor | None = None,
                        tiers: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_{k=1..N-1} mean over valid pairs (i, i+k) of max(0, s_{i+k} - s_i + margin·k); ``scores`` [B, N] best→worst.

    ``mask`` [B, N] marks real candidates (rankings shorter than N are padded at the end); a pair counts only when
    both candidates are real, and a distance k without any valid pair contributes 0. The mean runs over the whole
    batch, like ``nn.MarginRankingLoss`` over the flattened pairs in the paper's code.

    ``tiers`` [B, N] (optional) gives candidates the judge scored equally the same value: such a pair states no
    preference (a verifier's order among equally wrong answers is arbitrary), so it is not a valid pair. ``k`` stays
    the distance in the sorted list, as in the paper.

    ``positions`` [B, N] (optional) replaces the rank distance k of pair (i, i+k) by ``positions[i+k] -
    positions[i]`` (``tuna_open.train.objectives.score_positions``: the ranker's score gap on the rank scale).
    """
    total = scores.new_zeros(())
    for k in range(1, scores.shape[-1]):
        gap = margin * k if positions is None else margin * (positions[:, k:] - positions[:, :-k])
        hinge = (scores[:, k:] - scores[:, :-k] + gap).clamp_min(0.0)
        if mask is None and tiers is None:
            total = total + hinge.mean()
            continue
        valid = torch.ones_like(hinge, dtype=torch.bool) if mask is None else mask[:, k:] & mask[:, :-k]
        if tiers is not None:
            valid = valid & (tiers[:, k:] != tiers[:, :-k])
        # where(), not a product: a masked score may be anything (even inf) and must not leak into the sum.
        total = total + torch.where(valid, hinge, 0.0).sum() / valid.sum().clamp_min(1)
    return total


def tuna_loss(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = 0.1,
    mle_weight: float = 1.0,
    lenpen: float = 1.0,
    rank_weight: float = 1.0,
    tiers: torch.Tensor | None = None,
    mle_mask: torch.Tensor | None = None,
    ranking: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    label_logprobs: Callable[..., torch.Tensor] | None = None,
) -> TunaLossOutput:
    """The Tuna loss of a causal LM on B prompts x N candidates, tensors [B, N, L] with candidates best→worst.

    ``labels`` are -100 on prompt and padding tokens; a candidate whose labels are all -100 is a padding candidate
    and is left out of the ranking and the MLE term (and out of the forward pass). ``model`` may be wrapped (DDP,
    DeepSpeed, FSDP, PEFT): it is always called through its own forward, so wrappers see every step.

    ``tiers`` [B, N] masks tied pairs out of the ranking term (``margin_ranking_loss``). ``mle_mask`` [B, N] picks
    the candidates the MLE term imitates (default: all, as the paper's code does); the MLE term is then the mean
    negative log-likelihood over those candidates' label tokens, 0 when the batch has none. ``rank_weight`` 0 is the
    ablation that keeps only the MLE term (with ``mle_mask`` on accepted candidates: rejection-sampling fine-tuning).

    ``ranking`` (optional) replaces the margin term: called with (scores, summed log-likelihoods, real-candidate
    mask), all [B, N], it returns the ranking term (``tuna_open.train.objectives.RankingObjective``); ``margin`` and
    ``tiers`` then only reach it through the callable.

    ``label_logprobs`` (optional) replaces how the label tokens' log-probabilities are computed: called as
    ``_label_token_logprobs`` is, plus each row's prompt index, it must return the same values
    (``tuna_open.train.shared_prefix.shared_prefix_logprobs`` runs each prompt's common prefix once).
    """
    batch, n_cand, length = input_ids.shape
    flat_targets = labels.reshape(batch * n_cand, length)[:, 1:]
    counts = (flat_targets != IGNORE_INDEX).sum(-1)
    real = counts > 0
    if not bool(real.any()):
        raise ValueError("tuna_loss: every candidate's labels are -100; there is nothing to score")
    rows = real.nonzero().squeeze(-1)
    ids = input_ids.reshape(batch * n_cand, length)[rows]
    mask = attention_mask.reshape(batch * n_cand, length)[rows]
    targets = flat_targets[rows]
    # Columns that are padding in every kept row carry no label and influence no earlier token: drop them.
    width = int(mask.any(0).nonzero().max()) + 1
    ids, mask, targets = ids[:, :width], mask[:, :width], targets[:, :width - 1]

    predicts = targets != IGNORE_INDEX  # [R, width-1]: positions whose next token is a label
    if label_logprobs is not None:
        token_logp = label_logprobs(model, ids, mask, predicts, targets[predicts], rows // n_cand)
    else:
        token_logp = _label_token_logprobs(model, ids, mask, predicts, targets[predicts])
    row_sums = token_logp.new_zeros(len(rows)).index_add(0, predicts.nonzero()[:, 0], token_logp)
    scores = token_logp.new_zeros(batch * n_cand).index_copy(0, rows, _normalise(row_sums, counts[rows], lenpen))
    scores = scores.view(batch, n_cand)
    logps = token_logp.new_zeros(batch * n_cand).index_copy(0, rows, row_sums).view(batch, n_cand)
    real = real.view(batch, n_cand)
    rank = margin_ranking_loss(scores, margin, real, tiers) if ranking is None else ranking(scores, logps, real)
    if mle_mask is None:
        mle = -token_logp.mean()
    else:
        imitated = mle_mask.reshape(batch * n_cand)[rows][predicts.nonzero()[:, 0]]
        mle = -torch.where(imitated, token_logp, 0.0).sum() / imitated.sum().clamp_min(1)
    return TunaLossOutput(rank_weight * rank + mle_weight * mle, rank, mle, scores, logps)


def _normalise(sums: torch.Tensor, counts: torch.Tensor, lenpen: float) -> torch.Tensor:
    return sums / counts.clamp_min(1).to(sums.dtype).pow(lenpen)


def _label_token_logprobs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, predicts: torch.Tensor,
                          targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every ``predicts`` position of every row, flattened row-major ([T] float32)."""
    keep = torch.zeros_like(ids, dtype=torch.bool)
    head = _plain_output_head(model)
    if head is None:
        # The model's own head (LoRA'd, sharded, soft-capped...): ask it for logits at the label positions only.
        keep[:, :-1] = predicts
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits
        logits = logits.to(_accumulate_dtype(logits.dtype))
        return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    # An all-False ``logits_to_keep`` makes the model's head run on zero positions; the final (post-norm) hidden
    # states feed the chunked head instead.
    out = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, output_hidden_states=-1, use_cache=False)
    hidden = out.hidden_states[-1][:, :-1][predicts]
    return _ChunkedLinearLogProbs.apply(hidden, head.weight, head.bias, targets)


def _plain_output_head(model: nn.Module) -> nn.Linear | None:
    """The model's output head when log p = log_softmax(head(h)) with a full local weight, else None.

    Sharded weights (DeepSpeed ZeRO-3, FSDP) are only materialised inside the model's forward, and adapters or
    logit transforms change the head's function; all of these take the model's own logits path.
    """
    from accelerate.utils import extract_model_from_parallel
    from torch.distributed.tensor import DTensor

    inner = extract_model_from_parallel(model)
    head = inner.get_output_embeddings()
    if type(head) is not nn.Linear or isinstance(head.weight, DTensor):
        return None
    if head.weight.shape != (head.out_features, head.in_features):
        return None
    config = getattr(inner, "config", None)
    if any(getattr(config, key, None) for key in _POST_HEAD_CONFIG_KEYS):
        return None
    return head


def _compute_dtype(device: torch.device, param_dtype: torch.dtype) -> torch.dtype:
    """The dtype the head's matmuls run in: autocast's when it is on (as ``nn.Linear`` would), else the weight's."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return param_dtype


class _ChunkedLinearLogProbs(torch.autograd.Function):
    """log_softmax(h @ W.T + b)[target] per token, never holding more than budget + one chunk of [tokens x vocab].

    Forward computes each chunk's softmax in place and keeps the hidden states, one log-sum-exp per token, and the
    chunks' probabilities P while they fit in ``_KEEP_PROBS_BYTES``. With g the incoming gradient per token,
    d logp / d logits = g·(onehot(target) - P), so backward needs no [tokens x vocab] elementwise pass:

        dH = g·(W[target] - P @ W)        dW = -P.T @ (g·H) + scatter of g·H into the target rows

    A kept chunk costs two matmuls in backward; a chunk beyond the budget recomputes P first (a third).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor) -> torch.Tensor:
        dtype = _compute_dtype(hidden.device, weight.dtype)
        chunk = max(1, _CHUNK_ELEMENTS // weight.shape[0])
        w = weight.to(dtype)
        b = None if bias is None else bias.to(dtype)
        out = torch.empty(hidden.shape[0], dtype=_accumulate_dtype(dtype), device=hidden.device)
        lse = torch.empty_like(out)
        budget = _KEEP_PROBS_BYTES
        # Intermediates (not inputs or outputs) may live on ctx: the probabilities of the first len(probs) chunks.
        ctx.probs = []
        with torch.autocast(hidden.device.type, enabled=False):
            for index, start in enumerate(range(0, hidden.shape[0], chunk)):
                sl = slice(start, start + chunk)
                logits = _logits(hidden[sl].to(dtype), w, b)
                # Softmax in place: shift, pick the target, exponentiate, normalise; one buffer for the chunk.
                peak = logits.amax(-1, keepdim=True)
                shifted_target = logits.sub_(peak).gather(-1, targets[sl].unsqueeze(-1))
                total = logits.exp_().sum(-1, keepdim=True)
                out[sl] = (shifted_target - total.log()).squeeze(-1)
                lse[sl] = (peak + total.log()).squeeze(-1)
                size = logits.numel() * logits.element_size()
                if size <= budget and len(ctx.probs) == index:  # kept chunks stay a prefix
                    budget -= size
                    ctx.probs.append(logits.div_(total))
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.dtype, ctx.chunk = dtype, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dtype = ctx.dtype
        w = weight.to(dtype)
        b = None if bias is None else bias.to(dtype)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if need_b else None
        with torch.autocast(hidden.device.type, enabled=False):
            for index, start in enumerate(range(0, hidden.shape[0], ctx.chunk)):
                sl = slice(start, start + ctx.chunk)
                h, target, g = hidden[sl].to(dtype), targets[sl], grad_out[sl]
                if index < len(ctx.probs):
                    probs = ctx.probs[index].to(dtype)  # read only: a retained graph may run backward again
                else:
                    probs = _logits(h, w, b).sub_(lse[sl, None]).exp_().to(dtype)
                g_col = g.to(dtype)[:, None]
                if need_h:
                    grad_h[sl] = g_col * (w[target] - probs @ w)
                if need_w:
                    gh = g_col * h
                    grad_w.index_add_(0, target, gh.to(grad_w.dtype))
                    if grad_w.dtype == dtype:
                        grad_w.addmm_(probs.T, gh, alpha=-1)
                    else:
                        grad_w -= probs.T @ gh
                if need_b:
                    grad_b.index_add_(0, target, g.to(grad_b.dtype))
                    grad_b -= (g.to(dtype) @ probs).to(grad_b.dtype)
        return grad_h, grad_w, grad_b, None


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 at least: a log-sum-exp over a large vocabulary in bf16/fp16 loses the small probabilities."""
    return torch.promote_types(dtype, torch.float32)


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One chunk's logits, in the accumulation dtype."""
    logits = hidden @ weight.T if bias is None else torch.addmm(bias, hidden, weight.T)
    return logits.to(_accumulate_dtype(logits.dtype))
