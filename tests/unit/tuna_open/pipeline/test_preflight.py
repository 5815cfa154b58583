"""``tuna-open validate`` pre-flight: API key variables, optional packages and (on request) endpoints."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers.openai_server import OpenAIProtocolServer
from helpers.paths import ROOT

from tuna_open.cli import main

VLLM = importlib.util.find_spec("vllm") is not None


def validate(path: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(path), *extra])
    return result.exit_code, result.output


def recipe_with(tmp_path: Path, ranker: dict, train: dict | None = None) -> Path:
    data = {"name": "p", "data": {"d": {"source": "builtin:tasks", "limit": 2}}, "ranker": ranker,
            "stages": [{"name": "init", "kind": "init_model"},
                       {"name": "sft", "kind": "sft", "model": "@init", "data": "d", "train": train or {}},
                       {"name": "s", "kind": "sample", "model": "@sft", "data": "d"},
                       {"name": "r", "kind": "rank", "input": "@s"}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_missing_api_key_fails_validate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    path = recipe_with(tmp_path, {"backend": "openai", "openai": {"model": "gpt-4", "api_key_env": "MY_JUDGE_KEY"},
                                  "vllm": {"model": "unused-when-not-selected"}})
    code, out = validate(path)
    assert code == 2 and out.count("\n") == 1
    assert "stage r: environment variable MY_JUDGE_KEY is not set" in out
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test")
    code, out = validate(path)
    assert code == 0, out  # the vllm block is an unselected option: no vllm needed


@pytest.mark.skipif(VLLM, reason="vllm is installed here, so nothing is missing")
def test_shipped_vllm_recipe_needs_vllm() -> None:
    code, out = validate(ROOT / "recipes/open_vllm.yaml")
    assert code == 2 and "stage tuna_c_rankings: backend vllm needs the vllm package, which is not installed" in out


def test_trackers_and_deepspeed_must_be_importable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("tuna_open.pipeline.preflight.is_installed", lambda name: name not in ("wandb", "deepspeed"))
    verifier = {"backend": "function", "function": {"callable": "tuna_open.builtin.tasks:score_request"}}
    path = recipe_with(tmp_path, verifier, train={"report_to": ["wandb"], "trainer_args": {"deepspeed": "ds.json"}})
    code, out = validate(path)
    assert code == 2
    assert "stage sft: report_to: wandb needs the wandb package" in out
    assert "stage sft: trainer_args.deepspeed needs the deepspeed package" in out


def test_check_endpoints_finds_a_server_that_is_down(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    with OpenAIProtocolServer() as server:
        ranker = {"backend": "openai", "openai": {"model": "test-model", "base_url": server.base_url}}
        code, out = validate(recipe_with(tmp_path, ranker), "--check-endpoints")
        assert code == 0 and "1 endpoints answer" in out, out
        assert server.requests == []  # GET /models only: no completions were paid for
    code, out = validate(recipe_with(tmp_path, {"backend": "openai", "openai": {"model": "m", "base_url": dead}}),
                         "--check-endpoints")
    assert code == 2 and f"stage r: {dead} does not answer" in out
    code, out = validate(recipe_with(tmp_path, {"backend": "openai", "openai": {"model": "m", "base_url": dead}}))
    assert code == 0, out  # endpoints only with --check-endpoints (a local base_url needs no key)
