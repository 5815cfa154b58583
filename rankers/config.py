"""The keys every ranker backend accepts (``RankerConfig``) and the error of an unusable ranker config.

A foundation of ``rankers``: backends subclass ``RankerConfig`` and every layer (the LLM templates, the
log-prob engines, the backends, the registry) raises ``RankerConfigError``, so both live below all of them rather
than in ``rankers.registry``, which sits on top and imports the backends.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RankerConfig(BaseModel):
    """Keys every backend accepts. Backends subclass this and add their own."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    permutations: int = Field(default=1, ge=1)
    """Judge each request under k shuffled candidate orders and aggregate by Borda (1 = the paper's setup)."""
    cache_dir: str | None = None
    """Content-addressed on-disk cache of results; re-runs make no new calls."""
    seed: int = 0

    @field_validator("cache_dir")
    @classmethod
    def _cache_dir_not_a_file(cls, value: str | None) -> str | None:
        # Checked when the config is validated: a file there failed only at the first cache write, after paying.
        if value and Path(value).expanduser().exists() and not Path(value).expanduser().is_dir():
            raise ValueError(f"{value} is a file, expected a directory")
        return value


class RankerConfigError(ValueError):
    """A ranker config that cannot be used; the message names the offending key."""
