"""The model-facing prompt template (the paper's Alpaca template), defined once in ``rankers.templates``."""

from rankers.templates import TEMPLATES, format_prompt

__all__ = ["TEMPLATES", "format_prompt"]
