"""The shipped GPU recipes (``paper_gpt4.yaml``, ``ppo_rm_baseline.yaml``) run end to end on stand-ins, so a real run
cannot fail late on wiring: every model is a tiny Llama with a LLaMA-1-like tokenizer (SentencePiece-style, no pad
token), GPT-4 and the OpenAI teacher are the local OpenAI-protocol server, and only ``--set`` overrides shrink the
run (data, lengths, batch sizes, devices). Stage kinds, references, data flow and option blocks stay the recipe's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers.openai_server import OpenAIProtocolServer
from helpers.paths import ROOT

from tuna_open.cli import main
from tuna_open.generate.diversity import DiversityResampling

HEADER = re.compile(r"(?m)^###\s*Response\s+(\d+)\s*:?\s*$")


def judge(body: dict) -> str:
    """A GPT-4 stand-in that answers any of the project's judge prompts in every format their parsers read.

    The candidates are the ``### Response i`` / ``###Response i:`` heading lines of the user message. The answer
    scores candidate i with 14 - i and the judge's own answer (index N) with 15, once per line as LMOps's
    ``Response k: [total]`` and once as ``scores:`` / ``rank:`` lines, all agreeing.
    """
    text = "\n".join(str(m.get("content", "")) for m in body["messages"] if m.get("role") == "user")
    n = len(set(HEADER.findall(text)))
    assert n >= 1, "the judge prompt lists no responses"
    scores = [14 - i for i in range(n)] + [15]
    lines = [f"Response {i}: [{s}]" for i, s in enumerate(scores)]
    return "\n".join(lines + [f"scores: {scores}", f"rank: {[n] + list(range(n))}"])


def teacher(body: dict) -> dict:
    """An OpenAI completions teacher: n samples with per-token log-probs (one token per word)."""
    choices = []
    for i in range(body.get("n") or 1):
        words = ["answer", str(i), str(body.get("seed"))] + ["more"] * i
        logprobs = None
        if body.get("logprobs") is not None:
            offsets = [sum(len(w) + 1 for w in words[:k]) for k in range(len(words))]
            logprobs = {"tokens": words, "token_logprobs": [-0.1 * (i + 1)] * len(words), "text_offset": offsets,
                        "top_logprobs": None}
        choices.append({"index": i, "text": " " + " ".join(words), "finish_reason": "stop", "logprobs": logprobs})
    return {"choices": choices}


def _alpaca(path: Path, count: int) -> Path:
    tasks = [("Add the two numbers.", "12 30", "42"), ("Reverse the list 1 2 3.", "", "3 2 1"),
             ("Name the quick animal.", "", "The quick brown fox."), ("Sort the numbers.", "3 1 2", "1 2 3")]
    path.write_text(json.dumps([{"instruction": i, "input": x, "output": o} for i, x, o in tasks] * (count // 4)))
    return path


def shrink(recipe: Path, model: Path, data: Path, server_url: str, tmp: Path) -> list[str]:
    """The ``--set`` overrides that put ``recipe`` on the stand-ins and make it small; nothing else changes."""
    spec = yaml.safe_load(recipe.read_text())
    out = [f"data.{name}.source={data}" for name in spec["data"]]
    out += [f"data.{name}.{key}={value}" for name in spec["data"] for key, value in (("offset", 0), ("limit", 8))]
    out += ["data.heldout.source=" + str(data), "data.heldout.limit=4",
            f"ranker.openai.base_url={server_url}", f"ranker.openai.cache_dir={tmp / 'judge-cache'}"]
    if "report" in spec:
        out.append("report.primary_metric=rougeL")
    for stage in spec["stages"]:
        name, kind = stage["name"], stage["kind"]
        at = f"stages.{name}"
        if stage.get("model") and not str(stage["model"]).startswith("@") and kind != "sample":
            out.append(f"{at}.model={model}")  # the hub base model (huggyllama/llama-7b)
        if kind in {"sft", "train_tuna", "train_reward", "train_dpo", "train_ppo"}:
            out += [f"{at}.train.{k}={v}" for k, v in (("bf16", False), ("gradient_checkpointing", False),
                                                       ("per_device_batch_size", 2),
                                                       ("gradient_accumulation_steps", 1), ("logging_steps", 1))]
            if kind == "train_ppo":
                out += [f"{at}.train.max_steps=1", f"{at}.train.response_length=8", f"{at}.train.num_ppo_epochs=1"]
            else:
                out.append(f"{at}.train.num_epochs=1")
        if kind == "sample":
            out.append(f"{at}.max_new_tokens=8")
            backend = stage.get("sampler", {}).get("backend", "hf")
            if backend == "openai":  # the OpenAI teacher
                out.append(f"{at}.sampler.openai.base_url={server_url}")
            elif backend == "vllm":  # no GPU here: the transformers sampler loads the same model directory
                out.append(f"{at}.sampler.backend=hf")
        if kind == "eval":
            out += [f"{at}.max_new_tokens=8", f"{at}.sampler.backend=hf", f"{at}.data=heldout"]
            # Benchmarks need their downloads; their own tests cover them. The held-out data exercises the stage.
            out += [f"{at}.{suite}=null" for suite in ("superni", "lmentry", "vicuna_qa") if suite in stage]
    return out


@pytest.mark.parametrize("recipe", ["paper_gpt4.yaml", "ppo_rm_baseline.yaml"])
def test_gpu_recipe_runs_end_to_end_on_stand_ins(recipe: str, sentencepiece_model_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(sentencepiece_model_dir).pad_token is None  # LLaMA-1's situation
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    data = _alpaca(tmp_path / "alpaca.json", 8)
    path = ROOT / "recipes" / recipe
    with OpenAIProtocolServer(chat=judge, completions=teacher) as server:
        overrides = shrink(path, sentencepiece_model_dir, data, server.base_url, tmp_path)
        args = ["run", str(path), "--run-dir", str(tmp_path / "run")]
        for item in overrides:
            args += ["--set", item]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        judged = [b for b in server.requests if "messages" in b]
    report = json.loads((tmp_path / "run/report.json").read_text())
    spec = yaml.safe_load(path.read_text())
    assert [s["name"] for s in report["stages"]] == [s["name"] for s in spec["stages"]]
    assert all(s["status"] == "done" for s in report["stages"])
    evaluated = next(s for s in spec["stages"] if s["kind"] == "eval")["models"]
    assert set(report["models"]) == set(evaluated) and all("rougeL" in m for m in report["models"].values())
    assert judged, "GPT-4 was never asked"
    for stage in spec["stages"]:
        manifest = json.loads((tmp_path / "run/stages" / stage["name"] / "manifest.json").read_text())
        counts = manifest["result"].get("counts", {})
        if stage["kind"] == "rank":
            assert counts.get("failed", 0) == 0, (stage["name"], counts)
        if stage["kind"] == "sample" and "diversity" in stage:
            # Every sampled prompt went through the diversity loop and is counted under its number of resamples.
            rounds = DiversityResampling(**stage["diversity"]).max_rounds
            resampled = [counts[f"prompts_resampled_{k}x"] for k in range(rounds)]
            assert sum(resampled) == counts["prompts"] + counts["dropped"] > 0, (stage["name"], counts)
    # Every trained model got the [PAD] token SFT adds, never pad = EOS.
    for stage in spec["stages"]:
        if stage["kind"] in {"sft", "train_tuna", "train_dpo", "train_ppo"}:
            tok = AutoTokenizer.from_pretrained(tmp_path / "run/stages" / stage["name"] / "model")
            assert tok.pad_token == "[PAD]" and tok.pad_token_id != tok.eos_token_id
