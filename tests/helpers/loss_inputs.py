"""Small models and ranked batches shared by the loss and objective tests (float64 by default: exact comparisons)."""

from __future__ import annotations

import torch

from tuna_open.train.losses import IGNORE_INDEX


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
