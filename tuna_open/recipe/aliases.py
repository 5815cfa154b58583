"""Older spellings of recipe keys, still accepted so existing recipes keep validating.

The recipe layer owns them because two places must agree on them: the training settings that accept both
spellings (``tuna_open.train.settings.TrainSettings``) and ``--set``, where setting one spelling must drop the other.
"""

from __future__ import annotations

LEGACY_NAMES = {"num_epochs": "num_train_epochs", "per_device_batch_size": "per_device_train_batch_size"}
"""Deprecated aliases: our earlier spellings of TRL's names, still accepted (with a ``DeprecationWarning``) so
recipes written before the switch keep validating. Validation renames them, so a stage's config, and thus its
fingerprint, is the same under either spelling."""

KEY_ALIASES = {**LEGACY_NAMES, **{new: old for old, new in LEGACY_NAMES.items()}}
"""Pairs of keys naming the same setting, in both directions, for ``--set``."""
