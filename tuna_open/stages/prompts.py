"""Model-facing prompts built from records: one function knows the template and, for ``chat``, the tokenizer.

The templates themselves live in ``rankers.llm.templates`` (the likelihood rankers must render the same text). Every
stage that builds a prompt (SFT, sampling, Tuna, DPO, reward, PPO, GRPO, eval) goes through ``prompt_builder``
with the model it trains or samples, so under ``chat`` each model sees its own chat template: a student trained
on a teacher's samples gets the prompt in the student's format, not the teacher's.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from rankers.llm.templates import TEMPLATES, Message, conversation, format_prompt, transcript
from tuna_open.errors import UserError

__all__ = ["TEMPLATES", "build_prompt", "format_prompt", "prompt_builder", "sampler_prompter"]


def build_prompt(record: Mapping[str, Any], template: str, tokenizer: Any = None) -> str:
    """The prompt of one instruction (or candidates) record; a record the template cannot render is a UserError."""
    try:
        return format_prompt(record.get("instruction", ""), record.get("input", ""), template,
                             messages=record.get("messages"), tokenizer=tokenizer)
    except ValueError as err:
        raise UserError(f"record {record.get('id')!r}: {err}") from None


def prompt_builder(template: str, model: str) -> Callable[[Mapping[str, Any]], str]:
    """``record -> prompt`` for ``model`` (a local dir or HF id); only ``chat`` loads the model's tokenizer."""
    tokenizer = None
    if template == "chat":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        if tokenizer.chat_template is None:  # a model problem, named before any record is rendered
            raise UserError(f"template 'chat': {model} has no chat template (set one in its tokenizer, or use "
                            "template alpaca)")
    return lambda record: build_prompt(record, template, tokenizer)


def sampler_prompter(template: str, model: str,
                     chat_api: bool) -> Callable[[Mapping[str, Any]], tuple[str | list[Message], str]]:
    """``record -> (what the sampler is sent, the prompt text recorded)`` for sampling ``model``.

    A chat-completions sampler (``template: chat``, checked by ``SamplerChoice.check_template``) is sent the
    conversation and the server applies its own chat template, so the recorded text is a plain transcript; every
    other sampler is sent the rendered prompt, which is also recorded.
    """
    if chat_api:
        def chat(record: Mapping[str, Any]) -> tuple[str | list[Message], str]:
            messages = conversation(record.get("instruction", ""), record.get("input", ""), record.get("messages"))
            return messages, transcript(messages)
        return chat
    build = prompt_builder(template, model)

    def text(record: Mapping[str, Any]) -> tuple[str | list[Message], str]:
        prompt = build(record)
        return prompt, prompt
    return text
