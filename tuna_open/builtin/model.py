"""Tiny Llama-architecture models and a locally trained tokenizer: the quickstart's world needs no download.

Why Llama: it is the paper's architecture and the one vLLM, TRL and PEFT all support; a 2-layer, 64-wide
model trains in seconds on a CPU. head_dim stays at 32 because vLLM's CPU attention rejects 16.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


class TinyLlamaConfig(BaseModel):
    """The knobs of a builtin model; everything else is Llama's default."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = 64
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512


BUILTIN_MODELS: dict[str, TinyLlamaConfig] = {
    # The student: small enough that SFT leaves room for Tuna to improve it.
    "student": TinyLlamaConfig(),
    # The teacher: wider and deeper (and trained longer by the quickstart recipe).
    "teacher": TinyLlamaConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                               num_key_value_heads=4),
}


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 512) -> "PreTrainedTokenizerFast":
    """Train a byte-level BPE tokenizer on ``texts`` and save it as a transformers tokenizer in ``out_dir``.

    Byte-level so any string (including unseen characters) round-trips; pad/bos/eos/unk are real special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Digits split one by one: number tasks (add, sort, maximum) then work on a shared digit vocabulary instead of
    # arbitrary multi-digit merges, which a tiny model can actually learn in seconds.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.padding_side = "right"
    fast.save_pretrained(str(out_dir))
    return fast


def init_model(config: TinyLlamaConfig, tokenizer: "PreTrainedTokenizerFast", out_dir: str | Path,
               seed: int = 0) -> None:
    """Randomly initialise a Llama model sized by ``config`` for ``tokenizer`` and save model + tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
