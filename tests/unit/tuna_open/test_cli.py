"""The command line: rank, agree, eval and report through click, with real backends on tiny inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
from helpers.paths import ROOT

from tuna_open.cli import main
from tuna_open.data.jsonl import read_jsonl, write_jsonl

CANDIDATES = [
    {"id": "1", "instruction": "Add the two numbers.", "input": "2 3", "output": "5", "task": "add",
     "candidates": ["6", "5", "56"]},
    {"id": "2", "instruction": "Reverse the order of the numbers.", "input": "1 2 3", "output": "3 2 1",
     "task": "reverse", "candidates": ["1 2 3", "3 2", "3 2 1"]},
]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_rank_then_agree(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", CANDIDATES)
    cfg = tmp_path / "ranker.yaml"
    cfg.write_text(yaml.safe_dump({"backend": "function", "cache_dir": str(tmp_path / "cache"),
                                   "function": {"callable": "tuna_open.builtin.tasks:score_request"}}))
    code, out = invoke("rank", "--ranker", str(cfg), "--input", str(tmp_path / "c.jsonl"),
                       "--output", str(tmp_path / "r.jsonl"))
    assert code == 0, out
    rankings = read_jsonl(tmp_path / "r.jsonl")
    assert [r["order"][0] for r in rankings] == [1, 2] and all(r["ranker"] == "function" for r in rankings)
    assert f"viewer: {tmp_path / 'r.html'}" in out and (tmp_path / "r.html").read_text().count('class="prompt') == 2
    # Same candidates, a reversed "ranker": perfect disagreement.
    write_jsonl(tmp_path / "rev.jsonl", [{**r, "order": r["order"][::-1]} for r in rankings])
    code, out = invoke("agree", str(tmp_path / "r.jsonl"), str(tmp_path / "rev.jsonl"))
    assert code == 0, out
    result = json.loads(out)
    assert result["count"] == 2 and result["kendall_tau"] == -1.0 and result["top1_agreement"] == 0.0


def test_rank_errors_are_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "ranker.yaml"
    cfg.write_text(yaml.safe_dump({"backend": "function", "function": {"callable": "nope.module:fn"}}))
    code, out = invoke("rank", "--ranker", str(cfg), "--input", str(tmp_path / "missing.jsonl"),
                       "--output", str(tmp_path / "r.jsonl"))
    assert code == 2 and "nope.module" in out and len(out.strip().splitlines()) == 1
    (tmp_path / "bad.jsonl").write_text('{"id": "1", "instruction": "x", "candidates": ["a"]}\n{oops\n')
    cfg.write_text(yaml.safe_dump({"backend": "function",
                                   "function": {"callable": "tuna_open.builtin.tasks:score_request"}}))
    code, out = invoke("rank", "--ranker", str(cfg), "--input", str(tmp_path / "bad.jsonl"),
                       "--output", str(tmp_path / "r.jsonl"))
    assert code == 2 and "bad.jsonl:2" in out
    write_jsonl(tmp_path / "c.jsonl", CANDIDATES)  # an engine that cannot be used (rankers.llm.errors.EngineError)
    cfg.write_text(yaml.safe_dump({"backend": "openai", "openai": {"model": "gpt-4",
                                                                   "api_key_env": "TUNA_TEST_UNSET_KEY"}}))
    code, out = invoke("rank", "--ranker", str(cfg), "--input", str(tmp_path / "c.jsonl"),
                       "--output", str(tmp_path / "r.jsonl"))
    assert code == 2 and out.strip() == ("error: environment variable TUNA_TEST_UNSET_KEY is not set (the API key "
                                         "for https://api.openai.com)"), out


def test_eval_command_and_report(tmp_path: Path, tiny_model_dir: Path) -> None:
    run_dir = tmp_path / "ev"
    args = ["eval", "--model", f"tiny={tiny_model_dir}", "--data", "builtin:tasks", "--split", "heldout",
            "--limit", "4", "--verifier", "tuna_open.builtin.tasks:score", "--max-new-tokens", "4",
            "--run-dir", str(run_dir)]
    code, out = invoke(*args)
    assert code == 0, out
    report = json.loads((run_dir / "report.json").read_text())
    assert {"accuracy", "rougeL", "exact_match"} <= set(report["models"]["tiny"])
    code, out = invoke(*args)  # same command again: served from the cache
    assert code == 0 and "cached" in out
    code, out = invoke("report", str(run_dir))
    assert code == 0 and "tiny" in out


def test_eval_and_report_mistakes(tmp_path: Path) -> None:
    code, out = invoke("eval", "--model", "x=y", "--vicuna", str(tmp_path / "q.jsonl"))
    assert code == 2 and "--vicuna needs --judge" in out
    code, out = invoke("eval", "--model", "novalue")
    assert code == 2 and "NAME=MODEL" in out
    code, out = invoke("report", str(tmp_path))
    assert code == 2 and "not a tuna-open run directory" in out


def test_eval_rows_are_any_hf_id_or_path(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A row may be a Hugging Face model id (resolved through the hub cache, as a released baseline such as
    AlpacaFarm's PPO-sim would be) or a local directory; here the hub is a local cache and offline."""
    snapshot = tmp_path / "hub" / "models--tuna-open-test--ppo-sim-tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    run_dir = tmp_path / "ev"
    proc = subprocess.run([sys.executable, "-m", "tuna_open.cli", "eval",
                           "--model", "ppo_sim=tuna-open-test/ppo-sim-tiny", "--model", f"local={tiny_model_dir}",
                           "--data", "builtin:tasks", "--split", "heldout",
                           "--limit", "2", "--max-new-tokens", "2", "--run-dir", str(run_dir)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    models = json.loads((run_dir / "report.json").read_text())["models"]
    assert set(models) == {"ppo_sim", "local"} and models["ppo_sim"] == models["local"]  # the same weights
