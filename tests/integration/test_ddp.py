"""Two-process data parallelism (gloo on CPU) under ``accelerate launch`` trains exactly like one process that
accumulates the same two prompts per step: same logged losses, same weights."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from helpers.launch import free_port, run
from helpers.paths import HELPERS, ROOT

WORKER = HELPERS / "ddp_worker.py"


def test_two_process_ddp_matches_single_process_accumulation(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    common = ["--model", str(tiny_model_dir)]
    # No GPU: accelerate's multi-GPU launcher (torchrun) starts 2 processes that fall back to gloo on CPU.
    run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(free_port()), str(WORKER), *common,
         "--out", str(tmp_path / "ddp"), "--result", str(tmp_path / "ddp.json")], tmp_path)
    run([sys.executable, str(WORKER), *common, "--accumulation", "2",
         "--out", str(tmp_path / "single"), "--result", str(tmp_path / "single.json")], tmp_path)

    ddp, single = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("ddp", "single"))
    assert ddp["processes"] == 2 and ddp["backend"] == "gloo" and single["processes"] == 1
    assert len(ddp["history"]) == len(single["history"]) == 2
    for a, b in zip(ddp["history"], single["history"]):
        for key in ("loss", "rank_loss", "mle_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    ddp_weights, single_weights = (load_file(tmp_path / name / "model.safetensors") for name in ("ddp", "single"))
    base = load_file(tiny_model_dir / "model.safetensors")
    for key, value in single_weights.items():
        assert not torch.equal(value, base[key]), f"{key} did not train"
        torch.testing.assert_close(ddp_weights[key], value, rtol=1e-4, atol=1e-6, msg=key)


CONFIGS = ROOT / "recipes" / "accelerate"


@pytest.mark.parametrize("name, distributed_type", [("ddp.yaml", "MULTI_GPU"), ("deepspeed_zero2.yaml", "DEEPSPEED"),
                                                    ("deepspeed_zero3.yaml", "DEEPSPEED"), ("fsdp.yaml", "FSDP")])
def test_accelerate_configs_are_valid(name, distributed_type):
    """accelerate parses each config (unknown top-level keys are errors there) and knows every nested option
    (it would silently ignore a misspelt one)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(CONFIGS / name))
    assert config.distributed_type == distributed_type
    launch_options = {action.dest for action in launch_command_parser()._actions}
    nested = {**config.deepspeed_config, **config.fsdp_config}
    assert nested.keys() <= launch_options, nested.keys() - launch_options
    if distributed_type == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(name[-6])
