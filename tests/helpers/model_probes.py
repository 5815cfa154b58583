"""Wrappers and hooks around a tiny transformers model for tests of the prefix-once scorers
(``rankers.llm.prefix_cache``): one model that gives no cache, one count of the positions a model computes."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch


class WithoutCache(torch.nn.Module):
    """``model`` whose outputs carry no key/value cache, like a model (or a wrapper) that cannot reuse one."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config

    @property
    def device(self) -> torch.device:
        return self.inner.device

    def forward(self, **kwargs: Any) -> Any:
        out = self.inner(**kwargs)
        out.cache = None
        return out


@contextmanager
def counted_positions(model: torch.nn.Module) -> Iterator[list[int]]:
    """Yields a list that gets, per forward of ``model``, the real (unmasked) token positions it computed: the new
    tokens' columns of the attention mask, which also covers a forward that continues a cache."""
    counts: list[int] = []

    def hook(_: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        width = kwargs["input_ids"].shape[1]
        counts.append(int(kwargs["attention_mask"][:, -width:].sum()))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield counts
    finally:
        handle.remove()
