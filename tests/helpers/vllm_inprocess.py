"""One in-process vLLM engine driving the ``vllm`` judge, the vLLM likelihood scorer and the vLLM sampler.

Run by ``test_vllm_integration.py`` with the vLLM interpreter (``$VLLM_PYTHON``), because ``vllm.LLM`` spawns
its engine process and so needs this ``__main__`` guard, and because vLLM may live in another venv. Usage::

    python tests/helpers/vllm_inprocess.py MODEL_DIR IN.json OUT.json

IN.json holds ``judge`` (RankRequest dicts), ``score`` ({prompts, candidates}) and ``sample`` ({prompts,
params}); OUT.json gets the rankings (free and under ``constrain: rank_line``), scores, samples, judge stats and
timings. One engine serves all three, so the test pays one engine start.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path


def main(model_dir: str, in_path: str, out_path: str) -> None:
    from rankers import RankRequest
    from rankers.backends.vllm_judge import Config, VLLMJudge
    from rankers.llm.hf import load_tokenizer
    from rankers.llm.vllm_engine import EngineSettings, load_llm, shutdown_llm
    from rankers.logprob.vllm_scorer import VLLMLogprobScorer
    from tuna_open.generate.base import SamplingParams
    from tuna_open.generate.vllm_sampler import VLLMSampler

    job = json.loads(Path(in_path).read_text())
    started = time.monotonic()
    llm = load_llm(model_dir, EngineSettings(dtype="float32", max_model_len=2048, enforce_eager=True))
    out: dict = {"startup_s": time.monotonic() - started}

    judge = VLLMJudge(Config(backend="vllm", model=model_dir, max_tokens=32, max_repairs=1), llm=llm)
    started = time.monotonic()
    rankings = judge.rank([RankRequest(**r) for r in job["judge"]])
    out["judge_s"] = time.monotonic() - started
    out["rankings"] = [r.to_dict() for r in rankings]
    out["judge_stats"] = judge.stats
    constrained = VLLMJudge(Config(backend="vllm", model=model_dir, constrain="rank_line", max_repairs=1), llm=llm)
    out["constrained_rankings"] = [r.to_dict() for r in constrained.rank([RankRequest(**r) for r in job["judge"]])]
    out["constrained_stats"] = constrained.stats

    scorer = VLLMLogprobScorer(llm, load_tokenizer(model_dir))
    out["scores"] = scorer.score(job["score"]["prompts"], job["score"]["candidates"])

    sampler = VLLMSampler(llm)
    params = SamplingParams(**job["sample"]["params"])
    started = time.monotonic()
    out["samples"] = [[asdict(s) for s in samples] for samples in sampler.generate(job["sample"]["prompts"], params)]
    out["sample_s"] = time.monotonic() - started
    out["samples_again"] = [[asdict(s) for s in samples]
                            for samples in sampler.generate(job["sample"]["prompts"], params)]
    shutdown_llm(llm)
    Path(out_path).write_text(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:4])
