"""Prompt templates shared by samplers and likelihood rankers.

Why here and not in tuna_open: a teacher's log-likelihood is only meaningful under the exact prompt the
candidates were sampled with, and ``rankers`` must stay installable without ``tuna_open``. So the single
definition of the Alpaca template lives in this package and tuna_open imports it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

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

TEMPLATES = ("alpaca", "raw")


def check_template(name: str) -> str:
    """``name`` when it is one of ``TEMPLATES``; else ValueError naming the known ones."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r} (known: {', '.join(TEMPLATES)})")
    return name


TemplateName = Annotated[str, AfterValidator(check_template)]
"""A config key naming a template, checked when the config is validated."""


def format_prompt(instruction: str, input: str = "", template: str = "alpaca") -> str:
    """Render the model-facing prompt. ``raw`` passes the instruction (and input) through unchanged."""
    if template == "alpaca":
        return (ALPACA_WITH_INPUT if input else ALPACA_NO_INPUT).format(instruction=instruction, input=input)
    if template == "raw":
        return f"{instruction}\n\n{input}" if input else instruction
    check_template(template)  # raises for an unknown name
    raise NotImplementedError(f"template {template!r} is in TEMPLATES but format_prompt cannot render it")
