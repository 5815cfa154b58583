"""``@stage`` references: how a recipe wires one stage's output into another's config.

A reference is a whole string ``"@name"``. The recipe checks that each points to an earlier stage, the runner
swaps each for the referenced stage's fingerprint (so a change upstream re-runs everything downstream), and the
stage context swaps each for the path of that stage's artifact.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

REF = re.compile(r"^@([A-Za-z0-9_\-]+)$")


def iter_strings(value: Any) -> Iterator[str]:
    """Every string inside a (nested) config value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_strings(v)


def iter_refs(value: Any) -> Iterator[str]:
    """Every ``@stage`` reference inside a (nested) config value."""
    for text in iter_strings(value):
        m = REF.match(text)
        if m:
            yield m.group(1)


def substitute_refs(value: Any, mapping: Mapping[str, Any]) -> Any:
    """Replace every ``@name`` string inside ``value`` with ``mapping[name]``."""
    if isinstance(value, str):
        m = REF.match(value)
        return mapping[m.group(1)] if m else value
    if isinstance(value, dict):
        return {k: substitute_refs(v, mapping) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [substitute_refs(v, mapping) for v in value]
    return value
