"""TRL-named trainer settings, the ``trainer_args`` pass-through, ``report_to`` and plain progress lines."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers.paths import ROOT
from rich.console import Console

from tuna_open.errors import UserError
from tuna_open.progress import PeriodicLog, format_seconds
from tuna_open.recipe import parse_recipe
from tuna_open.stages.context import track
from tuna_open.stages.registry import STAGES
from tuna_open.train.dpo import DPOSettings
from tuna_open.train.scaffold import trainer_dir
from tuna_open.train.settings import TrainSettings
from tuna_open.train.sft import SFTSettings
from tuna_open.train.trl_config import trl_args
from tuna_open.train.tuna_trainer import TunaTrainConfig


def sft_recipe(train: dict) -> dict:
    return {"name": "s", "data": {"d": {"source": "builtin:tasks", "limit": 2}},
            "stages": [{"name": "init", "kind": "init_model"},
                       {"name": "sft", "kind": "sft", "model": "@init", "data": "d", "train": train}]}


def test_trl_names_and_legacy_aliases_are_the_same_field() -> None:
    new = SFTSettings(num_train_epochs=2, per_device_train_batch_size=3)
    old = SFTSettings(num_epochs=2, per_device_batch_size=3)
    assert new == old and new.model_dump() == old.model_dump()
    assert "num_epochs" not in new.model_dump()
    assert TunaTrainConfig(per_device_batch_size=2).per_device_train_batch_size == 2


@pytest.mark.parametrize(("train", "message"), [
    ({"num_epochs": 1, "num_train_epochs": 2}, "'num_epochs' is an alias of 'num_train_epochs'"),
    ({"trainer_args": {"not_a_field": 1}}, "trainer_args.not_a_field: not a field of SFTConfig"),
    ({"trainer_args": {"learning_rate": 1.0}}, "trainer_args.learning_rate: set it as train.learning_rate"),
    ({"trainer_args": {"output_dir": "/x"}}, "trainer_args.output_dir: set by the stage"),
    ({"report_to": ["mlflow"]}, "report_to"),
])
def test_bad_train_settings_are_one_error_line(train: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        parse_recipe(sft_recipe(train), Path("."), "r.yaml", STAGES)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("r.yaml: ") and "stages[1] (sft).train" in str(err.value)


def test_settings_reach_the_trl_config(tmp_path: Path) -> None:
    from trl import DPOConfig

    settings = DPOSettings(max_grad_norm=0.3, save_steps=7, save_total_limit=1, report_to="none",
                           trainer_args={"optim": "adafactor", "dataloader_drop_last": True})
    workdir = trainer_dir(tmp_path / "stage" / "model")
    args = trl_args(settings, workdir, beta=0.2)
    assert type(args) is DPOConfig  # the settings name their config class
    assert (args.max_grad_norm, args.save_strategy, args.save_steps, args.save_total_limit) == (0.3, "steps", 7, 1)
    assert args.optim == "adafactor" and args.dataloader_drop_last and args.beta == 0.2
    assert args.output_dir == str(tmp_path / "stage" / "model.trainer")
    assert args.run_name == "stage"
    assert args.report_to in ("none", [], ["none"])
    off = trl_args(DPOSettings(), workdir)
    assert off.save_strategy == "no"
    assert TrainSettings(report_to=["tensorboard", "wandb"]).report_to == ["tensorboard", "wandb"]
    assert TrainSettings(report_to="none").report_to == []


def all_settings() -> list[TrainSettings]:
    from tuna_open.train.grpo import GRPOSettings
    from tuna_open.train.ppo import PPOSettings
    from tuna_open.train.reward import RewardSettings

    return [SFTSettings(), DPOSettings(), RewardSettings(), PPOSettings(), GRPOSettings(),
            GRPOSettings(algorithm="rloo"), TunaTrainConfig()]


CONVERTED = {"save_steps", "report_to"}
"""Settings ``trl_args`` converts (checkpointing off when unset, [] → "none"): checked in the test above."""


@pytest.mark.parametrize("settings", all_settings(), ids=lambda s: f"{type(s).__name__}-{getattr(s, 'algorithm', '')}")
def test_every_settings_field_reaches_the_trl_config_or_is_listed(settings: TrainSettings, tmp_path: Path) -> None:
    import dataclasses

    from tuna_open.train.trl_config import RENAMED

    config_cls = settings.trl_config_class()
    config_names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    fields = set(type(settings).model_fields)
    # A TRL field of the same name is never dropped: a new TRL release adding one fails here until it is passed.
    assert not (settings.not_for_trl & config_names), "listed as not for TRL, but TRL's config has the field"
    assert settings.not_for_trl - fields <= {"lora"}, "not_for_trl names a field that no longer exists"
    args = trl_args(settings, trainer_dir(tmp_path / "stage" / "model"))
    for name in fields - settings.not_for_trl - CONVERTED:
        if name == "loss_type" and isinstance(settings, DPOSettings):
            assert args.loss_type == [settings.loss_type]  # TRL's DPO takes a list of losses
            continue
        assert getattr(args, RENAMED.get(name, name)) == getattr(settings, name), name


def test_a_new_settings_field_is_passed_by_name_or_refused(tmp_path: Path) -> None:
    class WithBeta1(DPOSettings):
        adam_beta1: float = 0.5

    class WithTypo(DPOSettings):
        adam_beta_one: float = 0.5

    workdir = trainer_dir(tmp_path / "stage" / "model")
    assert trl_args(WithBeta1(), workdir).adam_beta1 == 0.5  # no mapping code needed
    with pytest.raises(TypeError, match="WithTypo.adam_beta_one is not a field of DPOConfig"):
        trl_args(WithTypo(), workdir)


def test_legacy_names_are_deprecated_and_fingerprint_as_trl_names() -> None:
    with pytest.warns(DeprecationWarning, match="train.num_epochs is deprecated, use train.num_train_epochs"):
        old = parse_recipe(sft_recipe({"num_epochs": 2, "per_device_batch_size": 3}), Path("."), "r.yaml", STAGES)
    new = parse_recipe(sft_recipe({"num_train_epochs": 2, "per_device_train_batch_size": 3}), Path("."), "r.yaml",
                       STAGES)
    assert old.stages[1].effective(old) == new.stages[1].effective(new)


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_recipes_use_no_deprecated_alias(recipe: Path) -> None:
    import warnings

    from tuna_open.recipe import load_recipe

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"train\..* is deprecated", category=DeprecationWarning)
        load_recipe(recipe, STAGES)


def test_periodic_log_lines_have_an_eta() -> None:
    now = [0.0]
    lines: list[str] = []
    log = PeriodicLog(lines.append, 100, "ranking", interval=10, clock=lambda: now[0])
    for _ in range(50):
        now[0] += 1
        log.advance(1)
    assert lines[0] == "  ranking: 0/100 (0%), 0s elapsed"
    assert lines[1] == "  ranking: 10/100 (10%), 10s elapsed, ETA 1m30s"
    assert len(lines) == 6  # the start plus one line per 10 s, not one per record
    for _ in range(50):
        log.advance(1)
    assert lines[-1] == "  ranking: 100/100 (100%), 50s elapsed, done"
    assert format_seconds(3725) == "1h02m"


def test_track_prints_plain_lines_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with track(console, 3, "sampling 4×") as advance:
        advance(3)
    text = out.getvalue()
    assert "sampling 4×: 0/3 (0%)" in text and "sampling 4×: 3/3 (100%)" in text and "\r" not in text


def test_discarding_the_trainer_dir_keeps_tensorboard_events(tmp_path: Path) -> None:
    from tuna_open.train.scaffold import discard_workdir

    workdir = trainer_dir(tmp_path / "stage" / "model")
    (workdir / "runs" / "Nov27_20-00-00_host").mkdir(parents=True)
    (workdir / "runs" / "Nov27_20-00-00_host" / "events.out.tfevents.1").write_text("e")
    (workdir / "checkpoint-10").mkdir()
    discard_workdir(workdir)
    assert not workdir.exists()
    assert (tmp_path / "stage" / "logs" / "Nov27_20-00-00_host" / "events.out.tfevents.1").read_text() == "e"


def test_set_with_either_spelling_overrides_the_recipe() -> None:
    from tuna_open.recipe import apply_overrides

    recipe = sft_recipe({"num_epochs": 6, "per_device_train_batch_size": 32})
    data = apply_overrides(recipe, ["stages.sft.train.num_train_epochs=1", "stages.sft.train.per_device_batch_size=2"])
    assert data["stages"][1]["train"] == {"num_train_epochs": 1, "per_device_batch_size": 2}
    settings = parse_recipe(data, Path("."), "r.yaml", STAGES).stages[1].train
    assert (settings.num_train_epochs, settings.per_device_train_batch_size) == (1, 2)


def test_objective_keys_at_their_old_behaviour_leave_the_dump_and_so_the_fingerprint() -> None:
    """Stages cached before ``train.objective`` existed stay cached: the new keys only count once they are set."""
    from tuna_open.train.tuna_trainer import TunaTrainConfig

    assert not set(TunaTrainConfig.LATER_DEFAULTS) & set(TunaTrainConfig().model_dump())
    chosen = TunaTrainConfig(objective="lipo", beta=0.2).model_dump()
    assert chosen["objective"] == "lipo" and chosen["beta"] == 0.2 and "temperature" not in chosen
    assert TunaTrainConfig.model_validate(chosen).ranking_objective() == TunaTrainConfig(
        objective="lipo", beta=0.2).ranking_objective()
