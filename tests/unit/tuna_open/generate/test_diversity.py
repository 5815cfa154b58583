"""Diversity resampling (LMOps's criterion and loop) and how the ``sample`` stage records and reports it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from helpers.openai_server import OpenAIProtocolServer
from rich.console import Console

from tuna_open.data.jsonl import read_jsonl
from tuna_open.generate.base import Sample, SamplingParams
from tuna_open.generate.diversity import (
    DiversityResampling,
    pairwise_rougeL,
    sample_diverse,
)
from tuna_open.pipeline.runner import run_recipe
from tuna_open.recipe import load_recipe
from tuna_open.stages.registry import STAGES

NEAR_COPIES = ["the cat sat on the mat", "the cat sat on the mat today", "a completely different answer here",
               "nothing in common with others"]


def passes(criterion: DiversityResampling, texts: list[str]) -> bool:
    """Whether one round of ``texts`` meets ``criterion``, decided where the sample stage decides it."""
    def generate(prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        return [[Sample(text=t) for t in texts] for _ in prompts]

    one_round = criterion.model_copy(update={"max_rounds": 1})
    return sample_diverse(generate, ["prompt"], SamplingParams(n=len(texts)), one_round)[0].diverse


def test_lmops_default_is_max_stemmed_rougeL_at_0_8() -> None:
    lmops = DiversityResampling()
    assert (lmops.statistic, lmops.threshold, lmops.stemmer, lmops.max_rounds, lmops.temperature_step,
            lmops.on_failure) == ("max", 0.8, True, 3, 0.1, "keep")
    # One near-copy pair fails the maximum although the mean is low.
    scores = pairwise_rougeL(NEAR_COPIES, stemmer=True)
    assert max(scores) >= 0.8 > sum(scores) / len(scores)
    assert not passes(lmops, NEAR_COPIES)
    assert passes(DiversityResampling(statistic="mean"), NEAR_COPIES)
    # LMOps fails at equality (``max(rl) >= threshold``).
    assert not passes(DiversityResampling(threshold=1.0), ["same words", "same words"])


def test_stemming_is_a_setting() -> None:
    texts = ["dogs running", "dog runs"]
    assert pairwise_rougeL(texts, stemmer=True) == [1.0]
    assert pairwise_rougeL(texts, stemmer=False) == [0.0]
    assert not passes(DiversityResampling(stemmer=True), texts)
    assert passes(DiversityResampling(stemmer=False), texts)


class FakeSampler:
    """Prompt ``same`` gives copies below temperature 1.15, ``never`` always, ``fine`` never does."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], float, int]] = []

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        self.calls.append((list(prompts), round(params.temperature, 6), params.seed))
        out = []
        for p in prompts:
            copies = p == "never" or (p == "same" and params.temperature < 1.15)
            texts = [f"{p} answer"] * params.n if copies else [f"{p} {w}" for w in ("alpha", "beta", "gamma")]
            out.append([Sample(text=t, num_tokens=2) for t in texts[:params.n]])
        return out


def test_loop_resamples_only_failing_prompts_with_rising_temperature() -> None:
    sampler = FakeSampler()
    params = SamplingParams(n=3, temperature=1.0, seed=7)
    results = sample_diverse(sampler.generate, ["same", "fine", "never"], params, DiversityResampling())
    assert [(c[0], c[1]) for c in sampler.calls] == [
        (["same", "fine", "never"], 1.0), (["same", "never"], 1.1), (["same", "never"], 1.2)]
    assert len({c[2] for c in sampler.calls}) == 3  # every round draws with a new seed
    same, fine, never = results
    assert (same.resamples, same.diverse, same.samples[0].text) == (2, True, "same alpha")
    assert (fine.resamples, fine.diverse) == (0, True)
    assert (never.resamples, never.diverse, never.mean_rougeL) == (2, False, 1.0)
    assert [s.text for s in never.samples] == ["never answer"] * 3  # kept, not dropped


def test_without_criterion_one_round() -> None:
    sampler = FakeSampler()
    results = sample_diverse(sampler.generate, ["never"], SamplingParams(n=3), None)
    assert len(sampler.calls) == 1 and results[0].resamples == 0 and results[0].diverse


def copies_until_hot(body: dict) -> dict:
    """A completions server whose samples are copies below temperature 1.15 (``Add`` prompts: always)."""
    copies = body["temperature"] < 1.15 or "Add" in body["prompt"]
    texts = ["same answer"] * body["n"] if copies else [f"answer {w}" for w in ("alpha", "beta", "gamma")]
    return {"choices": [{"index": i, "text": t, "finish_reason": "stop", "logprobs": None}
                        for i, t in enumerate(texts[:body["n"]])]}


def _run_sample_stage(tmp_path: Path, server: OpenAIProtocolServer, diversity: dict) -> tuple[list[dict], dict]:
    recipe = {
        "name": "div",
        "data": {"p": {"source": "builtin:tasks", "split": "train", "limit": 8}},
        "stages": [{"name": "samples", "kind": "sample", "model": "served", "data": "p", "n": 3,
                    "dedup": False, "diversity": diversity,
                    "sampler": {"backend": "openai", "openai": {"base_url": server.base_url, "api_key": "t"}}}],
    }
    tmp_path.mkdir()
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    report = run_recipe(load_recipe(path, STAGES), tmp_path / "run", console=Console(quiet=True))
    assert report["stages"][0]["status"] == "done"
    manifest = json.loads((tmp_path / "run/stages/samples/manifest.json").read_text())
    return read_jsonl(tmp_path / "run/stages/samples/records.jsonl"), manifest["result"]["counts"]


def test_stage_records_resamples_and_keeps_or_drops(tmp_path: Path) -> None:
    with OpenAIProtocolServer(completions=copies_until_hot) as server:
        records, counts = _run_sample_stage(tmp_path / "keep", server, {})
        temperatures = sorted({round(b["temperature"], 6) for b in server.requests})
    assert temperatures == [1.0, 1.1, 1.2]
    add = [r for r in records if "Add" in r["instruction"]]
    assert 0 < len(add) < len(records) == 8 and counts["dropped"] == 0
    for r in records:  # nothing dropped; copies kept and flagged
        expected = (2, "Add" not in r["instruction"])
        assert (r["resamples"], r["diverse"]) == expected, r
    assert counts["prompts_resampled_2x"] == 8 and counts["prompts_resampled_0x"] == 0
    assert counts["not_diverse"] == len(add)

    with OpenAIProtocolServer(completions=copies_until_hot) as server:
        records, counts = _run_sample_stage(tmp_path / "drop", server, {"on_failure": "drop", "max_rounds": 2,
                                                                        "temperature_step": 0.2})
    assert counts["dropped"] == len(add) and len(records) == 8 - len(add)
    assert all(r["diverse"] and r["resamples"] == 1 for r in records)


@pytest.mark.parametrize("bad", [{"statistic": "median"}, {"threshold": 0}, {"max_rounds": 0}, {"retries": 3}])
def test_criterion_config_is_checked(bad: dict) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        DiversityResampling(**bad)
