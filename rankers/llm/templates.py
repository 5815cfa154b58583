"""Prompt templates shared by samplers and likelihood rankers.

Why here and not in tuna_open: a teacher's log-likelihood is only meaningful under the exact prompt the
candidates were sampled with, and ``rankers`` must stay installable without ``tuna_open``. So the single
definition of every template lives in this package and tuna_open imports it.

A prompt is rendered from a record's *conversation*: its ``messages`` (the turns before the response, ending
with a user turn) when it has them, else one user turn made of ``instruction`` (and ``input``). ``chat``
renders the conversation with the model's own chat template (``apply_chat_template`` with the generation
prompt), the only template that carries multi-turn context; ``alpaca`` and ``raw`` render single-turn
instruction text and refuse a multi-turn conversation rather than silently dropping its earlier turns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Sequence

from pydantic import AfterValidator

from rankers.config import RankerConfigError

if TYPE_CHECKING:
    from rankers.base import RankRequest

Message = dict[str, str]
"""One chat turn: ``{"role": "system"|"user"|"assistant", "content": str}``."""

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

TEMPLATES = ("alpaca", "raw", "chat")


def check_template(name: str) -> str:
    """``name`` when it is one of ``TEMPLATES``; else ValueError naming the known ones."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r} (known: {', '.join(TEMPLATES)})")
    return name


TemplateName = Annotated[str, AfterValidator(check_template)]
"""A config key naming a template, checked when the config is validated."""


def conversation(instruction: str, input: str = "", messages: Sequence[Message] | None = None) -> list[Message]:
    """The turns a response answers: ``messages`` when given, else one user turn of instruction (and input)."""
    if messages:
        return [dict(m) for m in messages]
    return [{"role": "user", "content": f"{instruction}\n\n{input}" if input else instruction}]


def is_multi_turn(messages: Sequence[Message] | None) -> bool:
    """More than one user turn, or an earlier assistant turn: context only a chat template can render."""
    return bool(messages) and sum(m["role"] != "system" for m in messages) > 1


def transcript(messages: Sequence[Message]) -> str:
    """A conversation as plain text (``Role: content`` blocks), for judges and readers, not for a model."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def apply_chat_template(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The tokenizer's chat template with the generation prompt, as text to tokenize with default special tokens.

    Every consumer (TRL trainers, samplers, scorers) tokenizes prompts with the tokenizer's special tokens, so a
    BOS the template writes itself is removed here when the tokenizer adds one anyway: never two BOS tokens.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        name = getattr(tokenizer, "name_or_path", "the tokenizer")
        raise ValueError(f"template 'chat': {name} has no chat template (set tokenizer.chat_template, or use "
                         "template alpaca)")
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]
    return text


def format_prompt(instruction: str, input: str = "", template: str = "alpaca",
                  messages: Sequence[Message] | None = None, tokenizer: Any = None) -> str:
    """Render the model-facing prompt. ``raw`` passes the instruction (and input) through unchanged; ``chat``
    needs the model's ``tokenizer``; ``messages`` is the record's conversation context, if it has one."""
    if template == "chat":
        if tokenizer is None:
            raise ValueError("template 'chat' needs the model's tokenizer")
        return apply_chat_template(tokenizer, conversation(instruction, input, messages))
    check_template(template)  # raises for an unknown name
    if is_multi_turn(messages):
        raise ValueError(f"template {template!r} renders one instruction; a multi-turn conversation needs "
                         "template 'chat'")
    if template == "alpaca":
        return (ALPACA_WITH_INPUT if input else ALPACA_NO_INPUT).format(instruction=instruction, input=input)
    if template == "raw":
        return f"{instruction}\n\n{input}" if input else instruction
    raise NotImplementedError(f"template {template!r} is in TEMPLATES but format_prompt cannot render it")


def request_prompt(request: "RankRequest", template: str, ranker: str, tokenizer: Any = None) -> str:
    """The prompt of a ranking request; one the template cannot render means the ranker's ``template`` is wrong
    for this data, a ``RankerConfigError`` (one line) rather than a failed judgement."""
    try:
        return format_prompt(request.prompt, request.input, template, request.messages, tokenizer)
    except ValueError as err:
        raise RankerConfigError(f"ranker {ranker}: request {request.id}: {err}") from None
