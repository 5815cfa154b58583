"""Tiny models' ingredients shared by fixtures and tests: a training corpus, a chat template, a LLaMA-1-like
tokenizer."""

from __future__ import annotations

TEXTS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction:\nAdd 12 and 30.\n\n### Response:\n42",
    "### Instruction:\nReverse the list 1 2 3.\n\n### Response:\n3 2 1",
    "The quick brown fox jumps over the lazy dog. 0123456789 rank: [0, 1, 2, 3]",
] * 20


CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
"""A minimal Jinja chat template; it writes BOS itself, as Llama 3's does, so the no-double-BOS rule is exercised."""


def build_sentencepiece_tokenizer(texts: list[str], vocab_size: int = 300, split_newlines: bool = True):
    """A LLaMA-1-like tokenizer trained locally: SentencePiece-style BPE (``▁`` word marker, prepended to the text),
    BOS added, no pad token, and newlines split off as LLaMA's byte fallback does (``split_newlines=False`` lets
    them merge with the next word, which a SentencePiece vocabulary with newline pieces can do)."""
    from tokenizers import SentencePieceBPETokenizer, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    sp = SentencePieceBPETokenizer()
    metaspace = pre_tokenizers.Metaspace(prepend_scheme="first")
    sp.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Split("\n", behavior="isolated"), metaspace])
                        if split_newlines else metaspace)
    sp.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                           show_progress=False)
    sp.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", sp.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=sp, bos_token="<s>", eos_token="</s>", unk_token="<unk>")

