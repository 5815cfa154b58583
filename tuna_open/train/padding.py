"""Pad-token surgery: every model this project trains pads with a token of its own, never with EOS.

A module of its own because every trainer, the PPO vocabulary check and anything that loads a model for training
needs it, independently of how that model is then trained.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


PAD_TOKEN = "[PAD]"
"""The pad token added to tokenizers that have none (LMOps's ``DEFAULT_PAD_TOKEN``, as in Alpaca's ``train.py``)."""


def ensure_pad_token(tokenizer: "PreTrainedTokenizerBase", *models: "PreTrainedModel") -> bool:
    """Give ``tokenizer`` a pad token distinct from EOS and make ``models`` able to embed it; True if one was added.

    Why: LLaMA-1's tokenizer has no pad token, and TRL's trainers then pad with EOS. PPO finds a response's end
    as its first pad token, so with pad == EOS the EOS would drop out of the policy loss and the reward be read
    before it. So, as LMOps and Alpaca do
    (``smart_tokenizer_and_embedding_resize``), a new special token ``[PAD]`` is added and every model's
    embeddings are resized, the new rows set to the mean of the old ones. Every trainer calls this, SFT first, so
    a model trained here always carries the same pad token, and later stages find it already there. A pad that is
    never attended to never affects outputs; the mean rows only keep a sampled pad from being an outlier.
    """
    added = tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id
    if added:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    for model in models:
        old = model.get_input_embeddings().num_embeddings  # not weight.shape: a ZeRO-3 shard is empty
        if old < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            # A sequence-classification model has no output embeddings.
            weights = [layer.weight for layer in (model.get_input_embeddings(), model.get_output_embeddings())
                       if layer is not None]
            with _gathered(weights):  # under ZeRO-3 each process holds a shard: edit the whole rows on rank 0
                for weight in weights:
                    weight.data[old:] = weight.data[:old].mean(dim=0, keepdim=True)
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return added


def _gathered(params: list[Any]) -> Any:
    """``deepspeed.zero.GatheredParameters`` (edits on rank 0, broadcast on exit) under ZeRO-3, else no-op."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not is_deepspeed_zero3_enabled():
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)
