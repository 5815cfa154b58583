"""Small models and ranked batches shared by the loss and objective tests (float64 by default: exact comparisons)."""

from __future__ import annotations

import torch

from tuna_open.train.losses import IGNORE_INDEX, margin_ranking_loss


def tiny_llama(dtype: torch.dtype = torch.float64, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    return LlamaForCausalLM(config).to(dtype)


def ranked_batch(vocab: int = 97, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B=3 prompts x N=4 candidates with different prompt and response lengths, right padding, and rankings of
    4, 3 and 1 candidates (missing ones are padding rows)."""
    gen = torch.Generator().manual_seed(seed)
    batch, n, length = 3, 4, 14
    input_ids = torch.randint(3, vocab, (batch, n, length), generator=gen)
    attention_mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    prompt_lens, n_real = [4, 6, 3], [4, 3, 1]
    for b in range(batch):
        for c in range(n_real[b]):
            end = int(torch.randint(prompt_lens[b] + 2, length + 1, (1,), generator=gen))
            attention_mask[b, c, :end] = 1
            labels[b, c, prompt_lens[b]:end] = input_ids[b, c, prompt_lens[b]:end]
        input_ids[b, n_real[b]:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    return input_ids, attention_mask, labels


def gradients(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def paper_token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p of every label token from a full-vocabulary log-softmax, as the paper's code computes it (0 off the
    labels), and the mask of label tokens; ``logits[..., t, :]`` predicts ``labels[..., t + 1]``."""
    targets = labels[..., 1:]
    mask = targets != IGNORE_INDEX
    token_logp = torch.log_softmax(logits[..., :-1, :], -1).gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)
    return token_logp.masked_fill(~mask, 0.0), mask


def paper_scores(token_logp: torch.Tensor, mask: torch.Tensor, lenpen: float = 1.0) -> torch.Tensor:
    """Σ log p / count^lenpen per candidate; 0 for a candidate without label tokens."""
    return token_logp.sum(-1) / mask.sum(-1).clamp_min(1).to(token_logp.dtype) ** lenpen


def naive_tuna(model, input_ids, attention_mask, labels, margin, mle_weight, lenpen):
    """Full-vocabulary log-softmax over every position of every candidate, as the paper's code."""
    batch, n, length = input_ids.shape
    logits = model(input_ids=input_ids.view(batch * n, length),
                   attention_mask=attention_mask.view(batch * n, length)).logits.view(batch, n, length, -1)
    token_logp, mask = paper_token_logprobs(logits, labels)
    real = mask.any(-1)
    scores = paper_scores(token_logp, mask, lenpen)
    mle = -token_logp.sum() / mask.sum()
    return margin_ranking_loss(scores, margin, real) + mle_weight * mle, scores * real
