"""The vLLM backends for real, on CPU, with the session's tiny random model.

- Against one vLLM OpenAI-compatible server shared by the module: the ``openai`` judge (a random model's
  garbage must end as counted failures, never as invented orders; under ``constrain: rank_line`` the same model
  must rank everything), ``teacher_logprob`` with ``engine: openai``
  (must equal the ``hf`` engine), and the OpenAI sampler; judge and sampler throughput is printed.
- One in-process engine (``vllm_inprocess.py``, in a subprocess for its ``__main__`` guard): the ``vllm`` judge
  (free and constrained, as above), the vLLM scorer (must equal the ``hf`` engine) and the vLLM sampler.

Skipped when no interpreter has vllm (see ``.ci/install_vllm.sh`` and ``$VLLM_PYTHON``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
from helpers.paths import HELPERS, ROOT
from helpers.vllm_server import VLLMServer, vllm_python

from rankers import RankRequest, build_ranker
from rankers.judging.constraints import rank_line_regex, rank_line_tokens
from rankers.llm.client_settings import ClientSettings
from rankers.llm.openai_client import OpenAIClient
from rankers.llm.templates import format_prompt
from rankers.logprob.openai_scorer import OpenAILogprobScorer
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import SamplingParams

pytestmark = pytest.mark.vllm

TOLERANCE = 1e-3
"""Summed float32 log-probs of a few tokens: vLLM's CPU kernels and torch's differ by round-off only."""

SCORED = [
    RankRequest(prompt="Add 12 and 30.", candidates=["42", "The answer is 41.", "3 2 1 0"], id="a"),
    RankRequest(prompt="Reverse the list.", input="1 2 3", candidates=["3 2 1", "x", ""], id="b"),
]
JUDGED = [RankRequest(prompt=f"Add {i} and {2 * i}.", candidates=[str(3 * i), str(3 * i + 1), "I do not know."],
                      id=str(i)) for i in range(6)]
SAMPLE_PROMPTS = [format_prompt(f"Add {i} and {i + 1}.") for i in range(8)]
SAMPLE_PARAMS = SamplingParams(n=4, max_new_tokens=16, temperature=1.0, seed=1, logprobs=True)


def require_vllm() -> str:
    python = vllm_python()
    if python is None:
        pytest.skip("vllm is not importable here and VLLM_PYTHON is not set (see .ci/install_vllm.sh)")
    return python


def report(capsys: pytest.CaptureFixture, line: str) -> None:
    with capsys.disabled():
        print(f"\n[vllm] {line}")


def hf_scores(model_dir: Path, requests: list[RankRequest]) -> list[list[tuple[float, int]]]:
    rankings = build_ranker({"backend": "teacher_logprob", "model": str(model_dir)}).rank(requests)
    return [list(zip(r.metadata["logprobs"], r.metadata["lengths"])) for r in rankings]


def assert_close(got: list[list[tuple[float, int]]], want: list[list[tuple[float, int]]]) -> None:
    for got_row, want_row in zip(got, want, strict=True):
        assert [n for _, n in got_row] == [n for _, n in want_row]
        assert [lp for lp, _ in got_row] == pytest.approx([lp for lp, _ in want_row], abs=TOLERANCE)


def assert_failures_are_counted(rankings: list, stats: dict, requests: list[RankRequest]) -> None:
    """A random model cannot write a rank line: every request fails, after its repair, with nothing invented."""
    assert len(rankings) == len(requests)
    for r in rankings:
        r = r if isinstance(r, dict) else r.to_dict()
        assert r["failed"] and r["order"] == [] and r["scores"] is None
        assert r["error"].startswith("no readable answer after 2 answer(s)")
        assert r["metadata"]["repairs"] == 1 and r["metadata"]["completion_tokens"] > 0
        assert "--- repair ---" in r["raw"]
    assert stats["failed"] == len(requests) and stats["judged"] == 0 and stats["repairs"] == len(requests)


def assert_constrained_rankings(rankings: list, stats: dict, requests: list[RankRequest]) -> None:
    """Under ``constrain: rank_line`` the same random model ranks every request at once: its decoding can only
    write a permutation's rank line (and the budget is that line's length)."""
    for request, r in zip(requests, rankings, strict=True):
        r = r if isinstance(r, dict) else r.to_dict()
        n = len(request.candidates)
        assert not r["failed"] and sorted(r["order"]) == list(range(n)) and r["scores"] is None
        assert re.fullmatch(rank_line_regex(n), r["raw"]) and r["metadata"]["repairs"] == 0
        assert 0 < r["metadata"]["completion_tokens"] <= rank_line_tokens(n)
    assert stats["judged"] == len(requests) and stats["failed"] == 0


def check_samples(samples: list[list[dict]], prompts: list[str], params: SamplingParams) -> None:
    assert len(samples) == len(prompts)
    for row in samples:
        assert len(row) == params.n
        for s in row:
            assert isinstance(s["text"], str) and 1 <= s["num_tokens"] <= params.max_new_tokens
            assert s["logprob"] < 0


def assert_reproduced(again: list[list[dict]], first: list[list[dict]]) -> None:
    """Seeded per prompt: the same texts again, whatever else is in the batch (log-probs up to round-off)."""
    assert [[s["text"] for s in row] for row in again] == [[s["text"] for s in row] for row in first]
    assert [s["logprob"] for row in again for s in row] == pytest.approx(
        [s["logprob"] for row in first for s in row], abs=TOLERANCE)


# --- one in-process engine ------------------------------------------------------------------------------


def test_inprocess_engine_judge_scorer_sampler(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    python = require_vllm()
    job = {"judge": [r.__dict__ for r in JUDGED],
           "score": {"prompts": [format_prompt(r.prompt, r.input) for r in SCORED],
                     "candidates": [r.candidates for r in SCORED]},
           "sample": {"prompts": SAMPLE_PROMPTS, "params": SAMPLE_PARAMS.model_dump()}}
    (tmp_path / "in.json").write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1", "VLLM_NO_USAGE_STATS": "1"}
    started = time.monotonic()
    proc = subprocess.run([python, str(HELPERS / "vllm_inprocess.py"), str(tiny_model_dir),
                           str(tmp_path / "in.json"), str(tmp_path / "out.json")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    out = json.loads((tmp_path / "out.json").read_text())

    assert_failures_are_counted(out["rankings"], out["judge_stats"], JUDGED)
    assert_constrained_rankings(out["constrained_rankings"], out["constrained_stats"], JUDGED)
    assert_close([[tuple(p) for p in row] for row in out["scores"]], hf_scores(tiny_model_dir, SCORED))
    check_samples(out["samples"], SAMPLE_PROMPTS, SAMPLE_PARAMS)
    assert_reproduced(out["samples"], out["samples_again"])
    report(capsys, f"in-process engine: start {out['startup_s']:.0f}s; judge {len(JUDGED) / out['judge_s']:.1f} "
                   f"requests/s; sampler {len(SAMPLE_PROMPTS) / out['sample_s']:.1f} prompts/s "
                   f"(n={SAMPLE_PARAMS.n}); whole subprocess {time.monotonic() - started:.0f}s")


# --- one OpenAI-compatible server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[VLLMServer]:
    with VLLMServer(tiny_model_dir, python=require_vllm()) as server:
        yield server


def test_server_judge_garbage_goes_down_the_failure_path(server: VLLMServer, capsys) -> None:
    judge = build_ranker({"backend": "openai", "model": server.model, "base_url": server.base_url,
                          "max_tokens": 32, "max_repairs": 1, "max_concurrency": 4, "max_retries": 0})
    started = time.monotonic()
    rankings = judge.rank(JUDGED)
    elapsed = time.monotonic() - started
    assert_failures_are_counted(rankings, judge.stats, JUDGED)
    assert judge.stats["calls"] == 2 * len(JUDGED) and judge.stats["failed_calls"] == 0
    report(capsys, f"server up in {server.startup_seconds:.0f}s; openai judge: {len(JUDGED) / elapsed:.1f} "
                   f"requests/s ({judge.stats['calls'] / elapsed:.1f} chat calls/s, 4 in flight)")


def test_server_judge_under_the_rank_line_constraint_ranks_everything(server: VLLMServer) -> None:
    judge = build_ranker({"backend": "openai", "model": server.model, "base_url": server.base_url,
                          "constrain": "rank_line", "max_concurrency": 4, "max_retries": 0})
    rankings = judge.rank(JUDGED)
    assert_constrained_rankings(rankings, judge.stats, JUDGED)
    assert judge.stats["calls"] == len(JUDGED)


def test_server_teacher_logprob_equals_the_hf_engine(server: VLLMServer, tiny_model_dir: Path) -> None:
    ranker = build_ranker({"backend": "teacher_logprob", "engine": "openai", "model": server.model,
                           "base_url": server.base_url, "max_concurrency": 2})
    rankings = ranker.rank(SCORED)
    assert_close([list(zip(r.metadata["logprobs"], r.metadata["lengths"])) for r in rankings],
                 hf_scores(tiny_model_dir, SCORED))
    assert all(r.metadata["source"] == "openai" for r in rankings)


def test_server_text_offsets_score_the_candidate_without_eos(server: VLLMServer, tiny_model_dir: Path) -> None:
    """Without a tokenizer the candidate's tokens are found by text offset; EOS is not scored."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    scorer = OpenAILogprobScorer(OpenAIClient(ClientSettings(base_url=server.base_url)), server.model)
    prompts = [format_prompt(r.prompt, r.input) for r in SCORED]
    got = scorer.score(prompts, [r.candidates for r in SCORED])
    for prompt, request, row in zip(prompts, SCORED, got):
        prompt_ids = tok(prompt)["input_ids"]
        for candidate, (logprob, n) in zip(request.candidates, row):
            ids = tok(candidate, add_special_tokens=False)["input_ids"]
            assert tok(prompt + candidate)["input_ids"] == prompt_ids + ids  # no merge across the boundary
            with torch.no_grad():
                logp = model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].log_softmax(-1)
            want = sum(float(logp[len(prompt_ids) + k - 1, t]) for k, t in enumerate(ids))
            assert n == len(ids) and logprob == pytest.approx(want, abs=TOLERANCE)


def test_server_sampler_returns_n_samples_with_logprobs(server: VLLMServer, capsys) -> None:
    choice = SamplerChoice(backend="openai", openai={"base_url": server.base_url, "max_concurrency": 4})
    sampler = build_sampler(server.model, choice)
    started = time.monotonic()
    samples = sampler.generate(SAMPLE_PROMPTS, SAMPLE_PARAMS)
    elapsed = time.monotonic() - started
    check_samples([[s.__dict__ for s in row] for row in samples], SAMPLE_PROMPTS, SAMPLE_PARAMS)
    again = sampler.generate(SAMPLE_PROMPTS[:2], SAMPLE_PARAMS)
    assert_reproduced([[s.__dict__ for s in row] for row in again], [[s.__dict__ for s in row] for row in samples[:2]])
    tokens = sum(s.num_tokens for row in samples for s in row)
    report(capsys, f"openai sampler: {len(SAMPLE_PROMPTS) / elapsed:.1f} prompts/s (n={SAMPLE_PARAMS.n}, "
                   f"{tokens / elapsed:.0f} tokens/s, 4 in flight)")
