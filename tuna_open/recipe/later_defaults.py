"""Config keys added after stages had been cached, kept out of fingerprints while they hold their default.

Why: a stage's fingerprint hashes its config's dump, so a new key would re-run (re-pay) every finished stage even
when its default is what the code did before the key existed. A config that inherits ``LaterDefaults`` leaves such
a key out of its dump (hence the fingerprint, the manifest and ``recipe.json``) while it holds that value; set to
anything else it is dumped, and the stage re-runs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, model_serializer


class LaterDefaults(BaseModel):
    """A pydantic config whose ``LATER_DEFAULTS`` keys are dumped only when they differ from those values."""

    LATER_DEFAULTS: ClassVar[dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _without_later_defaults(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if k not in self.LATER_DEFAULTS or v != self.LATER_DEFAULTS[k]}
