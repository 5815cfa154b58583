"""``--set dotted.key=value``: change a recipe (or a ranker config) from the command line without editing it."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tuna_open.errors import UserError
from tuna_open.recipe.aliases import KEY_ALIASES


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set dotted.key=value`` overrides (values parsed as YAML scalars).

    ``stages.NAME.key`` addresses a stage by name, since positions in the list are fragile.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected dotted.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as err:
            raise UserError(f"--set {item}: invalid YAML value ({getattr(err, 'problem', None) or err})") from None
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                match = [s for s in node if isinstance(s, dict) and s.get("name") == part]
                if not match:
                    raise UserError(f"--set {key}: no stage named {part!r}")
                node = match[0]
            else:
                if not isinstance(node, dict):
                    raise UserError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping")
                node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: cannot set a key inside a non-mapping")
        if parts[-1] in KEY_ALIASES:  # TRL's name overrides a recipe's older spelling, and back
            node.pop(KEY_ALIASES[parts[-1]], None)
        node[parts[-1]] = value
    return data
