"""Settings → TRL config: every settings field is passed by name, so none can be forgotten.

Copying fields one by one into each TRL config was how a new setting could validate in a recipe and then never
reach the trainer. Here a field goes to the config field of the same name (or the one ``RENAMED`` names), unless
its settings class lists it in ``not_for_trl``; a field that matches neither is an error at the first build, not
a silently ignored knob.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuna_open.train.settings import TrainSettings

if TYPE_CHECKING:
    from transformers import TrainingArguments

RENAMED = {"gradient_checkpointing": "activation_checkpointing"}
"""Settings whose TRL field has another name: transformers 5 calls it ``activation_checkpointing``; recipes keep
the name every tutorial uses (transformers' own ``gradient_checkpointing`` field is left at its default)."""


def config_fields(settings: TrainSettings, config_cls: type) -> dict[str, Any]:
    """``{config field: value}`` for every field of ``settings`` not in its ``not_for_trl``, as the config names it.

    Raises TypeError (a programming error, not a user's) for a field ``config_cls`` has no place for.
    """
    known = {f.name for f in dataclasses.fields(config_cls) if f.init}
    fields: dict[str, Any] = {}
    for name in type(settings).model_fields:
        if name in settings.not_for_trl:
            continue
        target = RENAMED.get(name, name)
        if target not in known:
            raise TypeError(f"{type(settings).__name__}.{name} is not a field of {config_cls.__name__}: "
                            "rename it in RENAMED or list it in not_for_trl")
        fields[target] = getattr(settings, name)
    return fields


def trl_args(settings: TrainSettings, workdir: Path, **specific: Any) -> "TrainingArguments":
    """The trainer's config (``settings.trl_config_class()``) from ``settings``, ``specific`` and ``trainer_args``.

    Self-contained: trackers only when ``report_to`` names them (the run named after the stage directory),
    checkpoints only when ``save_steps`` is set, CPU when there is no CUDA. ``specific`` holds what a trainer
    fixes or converts (a value computed from several settings, a different type); ``trainer_args`` override
    anything set here except ``output_dir``.
    """
    import torch

    config_cls = settings.trl_config_class()
    fields = config_fields(settings, config_cls)
    if not settings.save_steps:
        del fields["save_steps"]  # TRL's own default stays (unused without the "steps" strategy)
    return config_cls(**{
        "output_dir": str(workdir),
        **fields,
        "save_strategy": "steps" if settings.save_steps else "no",
        "report_to": settings.report_to or "none",
        "run_name": Path(workdir).parent.name,
        "disable_tqdm": True,  # the scaffold shows progress its own way (bar or log lines)
        "use_cpu": not torch.cuda.is_available(),
        **specific,
        **settings.trainer_args,
    })
