"""Ranking throughput per ranker backend on one candidate set: requests/s and candidates/s, uncached and cached.

Why: the rank stage calls a ranker once per instruction, thousands of times in a real run, and the backends
differ by orders of magnitude (a Python verifier, a likelihood or reward model in process, an API judge); the
on-disk cache (``cache_dir``) is what makes a re-run free. This script measures each backend of ``rankers`` on
the same requests: builtin held-out tasks, each with N candidates (the reference answer plus perturbed wrong
answers, shuffled), ranked after an untimed warm-up batch (model loading, connection set-up), ``--repeats``
timed passes, medians reported. Then the same requests go twice through a fresh ``cache_dir``: the cold pass
(every request a miss, the entries written) and the warm pass (hits), with the hit counts and whether the warm
pass returned the cold pass's orders.

Backends:

- ``function``: the builtin verifier ``tuna_open.builtin.tasks:score_request``.
- ``teacher_logprob_hf``: ``teacher_logprob`` with the ``hf`` engine on the model (``use_request_logprobs`` off,
  so every candidate is really scored).
- ``reward_model``: a random-init one-logit ``AutoModelForSequenceClassification`` sized like the model (or
  ``--reward-model DIR``, e.g. ``runs/quickstart/stages/reward/model``): a reward model's cost, noise for scores.
- ``teacher_logprob_hf_per_candidate``, ``reward_model_per_candidate``: ``shared_prefix: false`` (each candidate
  with its whole prompt, as before prompts ran once). Model backends also give ``candidate_tokens_per_s`` (candidate
  tokens + EOS per second), the real positions their forwards computed and from those the model GFLOP/s and
  fraction of the roof measured at the start (``benchmarks/roofline.py``). ``--prompt-tokens P``: the long-prompt
  shape (as ``benchmarks/tuna_step.py``'s): P tokens of task text before each input, candidates of ``--answer-tokens``.
- ``openai_fake_server``, ``pairwise_fake_server``: the contextual judge and the pairwise judge against the test
  suite's local OpenAI-protocol server (``tests/helpers/openai_server.py``, threads in this process) answering every
  call after ``--latency-ms``. They measure our client's concurrency and overhead (``ideal_requests_per_s`` is
  ``--concurrency`` calls per latency), not a model. Pairwise makes N(N-1) calls per request.
- ``teacher_logprob_vllm_server``: ``teacher_logprob`` with the ``openai`` engine against a real vLLM server
  (``--vllm-python`` or ``$VLLM_PYTHON``; prefix caching off, since vLLM 0.27.1 returns NaN/stale prompt
  log-probs for prefix-cache hits). Started once, last, so it never shares the CPU with the in-process backends.

The model and the vLLM server come from ``benchmarks/sampling.py``. A backend that cannot run is listed under
``skipped`` with the reason; no number is ever estimated for it.

    python benchmarks/ranking.py
    VLLM_PYTHON=.venv-vllm/bin/python python benchmarks/ranking.py --requests 64 --latency-ms 200
    python benchmarks/ranking.py --model runs/quickstart/stages/sft/model --backends function teacher_logprob_hf
    python benchmarks/ranking.py --prompt-tokens 256 --backends teacher_logprob_hf teacher_logprob_hf_per_candidate
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import random
import re
import statistics
import string
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import roofline
import sampling  # noqa: F401 - imported first (plain imports sort first): it puts tests/ on sys.path for helpers
import torch
from helpers.model_probes import counted_positions
from helpers.openai_server import OpenAIProtocolServer
from sampling import (
    Skipped,
    close,
    describe_server,
    host,
    model_for,
    one_line,
    server_errors,
    torch_device,
    vllm_server,
)

from rankers import Ranking, RankRequest, build_ranker
from rankers.llm.hf import load_tokenizer
from rankers.llm.templates import request_prompt
from rankers.logprob.encoding import encode_pairs
from rankers.wrappers.cache import CachedRanker
from tuna_open.builtin.model import BUILTIN_MODELS
from tuna_open.builtin.tasks import corpus, generate

VERIFIER = "tuna_open.builtin.tasks:score_request"
FAKE_API_KEY = "sk-benchmark-local"
"""Sent to the local servers instead of whatever ``$OPENAI_API_KEY`` holds: a real key never leaves for a benchmark."""
MODEL_BACKENDS = ("teacher_logprob_hf", "teacher_logprob_hf_per_candidate", "reward_model",
                  "reward_model_per_candidate")
IN_PROCESS = ("function", *MODEL_BACKENDS, "openai_fake_server", "pairwise_fake_server")
VLLM_SERVER = "teacher_logprob_vllm_server"
MAX_CANDIDATES = 5
"""The reference plus the four distinct perturbations ``wrong_answers`` always produces."""


# --- the candidate set -------------------------------------------------------------------------------------


def changed_character(reference: str, rng: random.Random) -> str:
    """One digit or letter replaced by another of its kind (a near miss the verifier gives partial credit)."""
    positions = [i for i, c in enumerate(reference) if c.isalnum()]
    if not positions:
        return reference + "x"
    i = rng.choice(positions)
    c = reference[i]
    if c.isdigit():
        pool = string.digits
    else:
        pool = string.ascii_uppercase if c.isupper() else string.ascii_lowercase
    return reference[:i] + rng.choice([x for x in pool if x != c]) + reference[i + 1:]


def truncated(reference: str) -> str:
    """The last item (or character) dropped; a one-character answer doubled instead, so it is never empty."""
    if " " in reference:
        return reference.rsplit(" ", 1)[0]
    return reference[:-1] if len(reference) > 1 else reference * 2


def wrong_answers(reference: str, rng: random.Random) -> list[str]:
    """Four wrong answers, distinct from each other and from the reference (by construction: a same-length edit,
    a shorter or doubled answer, a wrapped one, a refusal)."""
    return [changed_character(reference, rng), f"The answer is {reference}.", truncated(reference),
            "I do not know."]


def candidate_set(count: int, candidates: int, seed: int) -> list[RankRequest]:
    """``count`` builtin held-out tasks, each with the reference and ``candidates - 1`` wrong answers, shuffled."""
    rng = random.Random(f"bench-ranking/{seed}")
    out = []
    for record in generate("heldout", count, seed):
        texts = [record["output"], *wrong_answers(record["output"], rng)[:candidates - 1]]
        rng.shuffle(texts)
        out.append(RankRequest(prompt=record["instruction"], input=record["input"], reference=record["output"],
                               candidates=texts, id=record["id"], metadata={"task": record["task"]}))
    return out


def long_prompt_set(requests: Sequence[RankRequest], tokenizer: Any, prompt_tokens: int,
                    answer_tokens: tuple[int, int], seed: int) -> list[RankRequest]:
    """``requests`` in the long-prompt shape: ``prompt_tokens`` tokens (of ``tokenizer``) of builtin task text in
    front of each input, each candidate continued with such text to a length drawn from ``answer_tokens``."""
    rng = random.Random(f"bench-ranking-long/{seed}")
    words = " ".join(corpus(200, seed)).split()

    def grown(text: str, tokens: int) -> str:
        while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < tokens:
            start = rng.randrange(len(words) - 2)
            text = f"{text} {words[start]} {words[start + 1]}".lstrip()
        return text

    return [dataclasses.replace(r, input=f"{grown('', prompt_tokens)}\n\n{r.input}".rstrip(),
                                candidates=[grown(c, rng.randint(*answer_tokens)) for c in r.candidates])
            for r in requests]


def token_counts(tokenizer: Any, requests: Sequence[RankRequest]) -> dict[str, Any]:
    """Mean prompt tokens and all candidate tokens + EOS of ``requests``, under the one rule every scorer tokenizes
    by (Alpaca prompts)."""
    prompts = [request_prompt(r, "alpaca", "benchmark") for r in requests]
    pairs = encode_pairs(tokenizer, prompts, [r.candidates for r in requests])
    return {"mean_prompt_tokens": round(statistics.mean(len(tokenizer(p)["input_ids"]) for p in prompts), 1),
            "candidate_tokens_per_pass": sum(len(ids) for *_, ids in pairs)}


# --- fake judges (answers are valid, so the client never repairs: one call per judgement) ------------------


def contextual_answer(body: dict) -> str:
    """A contextual judge's answer ranking the shown responses in the order shown."""
    n = len(re.findall(r"(?m)^### Response \d+$", body["messages"][0]["content"]))
    return f"scores: {[15 - i for i in range(n)]}\nrank: {list(range(n))}"


def pairwise_answer(body: dict) -> str:
    """Always "A": what is measured is the calls, not what the verdicts mean."""
    return "verdict: A"


# --- models ------------------------------------------------------------------------------------------------


def reward_model_for(args: argparse.Namespace, policy: str, workdir: Path) -> tuple[str, str]:
    """(reward model directory, description): ``--reward-model``, else a random-init one-logit classifier with the
    policy's architecture and tokenizer (what the ``train_reward`` stage saves, untrained)."""
    if args.reward_model:
        return args.reward_model, args.reward_model
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    out = workdir / "reward_model"
    torch.manual_seed(args.seed)
    config = AutoConfig.from_pretrained(policy, num_labels=1)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(policy).save_pretrained(out)
    return str(out), f"random-init {config.model_type} sequence classifier (1 logit) like the model"


# --- measuring ---------------------------------------------------------------------------------------------


def timed(rank: Callable[[Sequence[RankRequest]], list[Ranking]],
          requests: Sequence[RankRequest]) -> tuple[list[Ranking], float]:
    start = time.perf_counter()
    rankings = rank(requests)
    return rankings, time.perf_counter() - start


def rates(requests: Sequence[RankRequest], seconds: float) -> dict[str, float]:
    return {"requests_per_s": round(len(requests) / seconds, 2),
            "candidates_per_s": round(sum(len(r.candidates) for r in requests) / seconds, 1)}


def in_process_model(ranker: Any) -> torch.nn.Module | None:
    """The transformers model an in-process ranker holds once loaded (the reward model's, the hf scorer's)."""
    model = getattr(ranker, "model", None) or getattr(getattr(ranker, "_scorer", None), "model", None)
    return model if isinstance(model, torch.nn.Module) else None  # an API judge's ``model`` is a name


def uncached(config: dict[str, Any], warmup: Sequence[RankRequest], requests: Sequence[RankRequest],
             repeats: int) -> dict[str, Any]:
    """Throughput of the bare ranker: medians of ``repeats`` passes after a warm-up batch; for a ranker holding a
    model, also the real token positions its forwards computed per pass and its parameter count."""
    ranker = build_ranker(config)
    try:
        ranker.rank(warmup)
        model = in_process_model(ranker)
        with counted_positions(model) if model is not None else contextlib.nullcontext([]) as counts:
            passes = [timed(ranker.rank, requests) for _ in range(repeats)]
        model_facts = {} if model is None else {"positions_per_pass": sum(counts) // repeats,
                                                "parameters": sum(p.numel() for p in model.parameters())}
    finally:
        close(ranker)
    seconds = [s for _, s in passes]
    return {**rates(requests, statistics.median(seconds)), "seconds": [round(s, 3) for s in seconds],
            "median_s": round(statistics.median(seconds), 4), "failed": sum(r.failed for r in passes[-1][0]),
            **model_facts}


def model_rates(result: dict[str, Any], tokens: int, roof: dict[str, Any]) -> dict[str, Any]:
    """A model backend's candidate tokens/s and, from the positions it computed, its share of the roof."""
    positions_per_s = result["positions_per_pass"] / result["median_s"]
    return {"candidate_tokens_per_pass": tokens, "candidate_tokens_per_s": round(tokens / result["median_s"], 1),
            "positions_per_s": round(positions_per_s, 1), "device": torch_device(),
            **roofline.fraction(result["parameters"], positions_per_s, roof, roofline.FORWARD_FLOPS_PER_PARAM)}


def through_cache(config: dict[str, Any], warmup: Sequence[RankRequest], requests: Sequence[RankRequest],
                  cache_dir: Path) -> dict[str, Any]:
    """The same requests twice through a fresh ``cache_dir``: the cold pass misses and writes, the warm pass hits.

    The warm-up requests are not among the measured ones, so the cold pass really is all misses."""
    ranker = build_ranker({**config, "cache_dir": str(cache_dir)})
    assert isinstance(ranker, CachedRanker)  # what build_ranker wraps a ranker in when cache_dir is set
    try:
        ranker.rank(warmup)
        misses_before = ranker.misses
        cold, cold_s = timed(ranker.rank, requests)
        hits_cold, misses_cold = ranker.hits, ranker.misses
        warm, warm_s = timed(ranker.rank, requests)
    finally:
        close(ranker)
    return {
        "cold_requests_per_s": rates(requests, cold_s)["requests_per_s"],
        "warm_requests_per_s": rates(requests, warm_s)["requests_per_s"],
        "warm_speedup": round(cold_s / warm_s, 1),
        "cold_misses": misses_cold - misses_before,
        "warm_hits": ranker.hits - hits_cold,
        "warm_misses": ranker.misses - misses_cold,
        "warm_orders_equal_cold": [r.order for r in warm] == [r.order for r in cold],
    }


def bench(config: dict[str, Any], warmup: Sequence[RankRequest], requests: Sequence[RankRequest],
          args: argparse.Namespace, cache_dir: Path) -> dict[str, Any]:
    result = uncached(config, warmup, requests, args.repeats)
    return {**result, "cache": through_cache(config, warmup, requests, cache_dir)} if args.cache_pass else result


def fake_server_notes(server: OpenAIProtocolServer, calls_per_request: int, result: dict[str, Any],
                      args: argparse.Namespace) -> dict[str, Any]:
    """What a fake-server number means: the ceiling set by latency and concurrency, and how close we got."""
    ideal = args.concurrency / (args.latency_ms / 1000) / calls_per_request
    return {"simulated_latency_ms": args.latency_ms, "calls_per_request": calls_per_request,
            "ideal_requests_per_s": round(ideal, 2),
            "fraction_of_ideal": round(result["requests_per_s"] / ideal, 3),
            "server_max_in_flight": server.max_in_flight,
            "note": "local fake OpenAI-protocol server: measures the client's concurrency and overhead, not a model"}


def bench_vllm_server(model: str, api: dict[str, Any], warmup: Sequence[RankRequest],
                      requests: Sequence[RankRequest], args: argparse.Namespace, cache_dir: Path) -> dict[str, Any]:
    """``teacher_logprob`` with the ``openai`` engine against a vLLM server serving ``model``."""
    with vllm_server(model, args.vllm_python) as server, server_errors(server):
        config = {"backend": "teacher_logprob", "engine": "openai", "model": server.model,
                  "base_url": server.base_url, "use_request_logprobs": False, **api}
        return {**bench(config, warmup, requests, args, cache_dir), "server": describe_server(server)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: build a random-init tiny Llama)")
    parser.add_argument("--architecture", choices=sorted(BUILTIN_MODELS), default="student",
                        help="size of the built model (ignored with --model)")
    parser.add_argument("--reward-model", help="reward model directory (default: a random-init classifier)")
    parser.add_argument("--requests", type=int, default=32, help="timed requests per pass")
    parser.add_argument("--warmup", type=int, default=4, help="requests of the untimed warm-up batch")
    parser.add_argument("--candidates", type=int, default=4, choices=range(2, MAX_CANDIDATES + 1),
                        help="candidates per request (N)")
    parser.add_argument("--repeats", type=int, default=3, help="timed uncached passes per backend (medians)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward (teacher_logprob hf, reward)")
    parser.add_argument("--prompt-tokens", type=int, default=0,
                        help="the long-prompt shape: a context of this many tokens in front of each input (0: off)")
    parser.add_argument("--answer-tokens", type=int, nargs=2, default=(24, 48), metavar=("MIN", "MAX"),
                        help="with --prompt-tokens: each candidate's length in tokens, drawn in [MIN, MAX]")
    parser.add_argument("--cache-pass", action=argparse.BooleanOptionalAction, default=True, help="also time the "
                        "cold and warm passes through a fresh cache_dir")
    parser.add_argument("--concurrency", type=int, default=8, help="API requests in flight (the client default)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the fake server's delay per call")
    parser.add_argument("--backends", nargs="+", choices=[*IN_PROCESS, VLLM_SERVER], default=[*IN_PROCESS, VLLM_SERVER])
    parser.add_argument("--vllm-python", help="interpreter with vllm for the server (default: $VLLM_PYTHON)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (in process)")
    args = parser.parse_args()
    machine = host()
    torch.set_num_threads(args.threads)
    roof = roofline.measure()

    api = {"api_key": FAKE_API_KEY, "max_concurrency": args.concurrency, "max_retries": 0}
    backends: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}

    with tempfile.TemporaryDirectory(prefix="bench-ranking-") as tmp, contextlib.ExitStack() as servers:
        workdir = Path(tmp)
        model, model_desc = model_for(args, workdir)
        tokenizer = load_tokenizer(model)
        every = candidate_set(args.warmup + args.requests, args.candidates, args.seed)
        if args.prompt_tokens:
            every = long_prompt_set(every, tokenizer, args.prompt_tokens, args.answer_tokens, args.seed)
        warmup, requests = every[:args.warmup], every[args.warmup:]
        counts = token_counts(tokenizer, requests)
        wants_reward = any(b.startswith("reward_model") for b in args.backends)
        reward, reward_desc = reward_model_for(args, model, workdir) if wants_reward else (None, None)
        delay = args.latency_ms / 1000
        judge = servers.enter_context(OpenAIProtocolServer(chat=contextual_answer, delay=delay))
        pairs = servers.enter_context(OpenAIProtocolServer(chat=pairwise_answer, delay=delay))
        configs: dict[str, dict[str, Any]] = {
            "function": {"backend": "function", "callable": VERIFIER},
            "teacher_logprob_hf": {"backend": "teacher_logprob", "engine": "hf", "model": model,
                                   "use_request_logprobs": False, "batch_size": args.batch_size},
            "teacher_logprob_hf_per_candidate": {"backend": "teacher_logprob", "engine": "hf", "model": model,
                                                 "use_request_logprobs": False, "batch_size": args.batch_size,
                                                 "shared_prefix": False},
            "reward_model": {"backend": "reward_model", "model": reward, "batch_size": args.batch_size},
            "reward_model_per_candidate": {"backend": "reward_model", "model": reward, "batch_size": args.batch_size,
                                           "shared_prefix": False},
            "openai_fake_server": {"backend": "openai", "model": "test-model", "base_url": judge.base_url, **api},
            "pairwise_fake_server": {"backend": "pairwise", "model": "test-model", "base_url": pairs.base_url,
                                     **api},
        }
        for name in (b for b in IN_PROCESS if b in args.backends):
            backends[name] = bench(configs[name], warmup, requests, args, workdir / "cache" / name)
            if name in MODEL_BACKENDS:
                backends[name].update(model_rates(backends[name], counts["candidate_tokens_per_pass"], roof))
        for name in set(backends) & {"teacher_logprob_hf", "reward_model"}:
            if (before := backends.get(f"{name}_per_candidate")) is not None:
                backends[name]["candidate_tokens_per_s_vs_per_candidate"] = round(
                    backends[name]["candidate_tokens_per_s"] / before["candidate_tokens_per_s"], 2)
        if "openai_fake_server" in backends:
            backends["openai_fake_server"].update(fake_server_notes(judge, 1, backends["openai_fake_server"], args))
        if "pairwise_fake_server" in backends:
            backends["pairwise_fake_server"].update(fake_server_notes(
                pairs, args.candidates * (args.candidates - 1), backends["pairwise_fake_server"], args))

        if VLLM_SERVER in args.backends:
            try:
                backends[VLLM_SERVER] = bench_vllm_server(model, api, warmup, requests, args,
                                                          workdir / "cache" / VLLM_SERVER)
            except Skipped as reason:
                skipped[VLLM_SERVER] = str(reason)
            except Exception as err:  # the server dying mid-run is a finding to report, not a reason to lose the rest
                failed[VLLM_SERVER] = one_line(err)

    print(json.dumps({
        "backends": backends,
        "roofline": roof,
        "skipped": skipped,
        "failed": failed,
        "model": model_desc,
        "reward_model": reward_desc,
        "settings": {"requests": args.requests, "warmup_requests": args.warmup, "candidates": args.candidates,
                     "prompt_tokens": args.prompt_tokens,
                     "answer_tokens": list(args.answer_tokens) if args.prompt_tokens else None,
                     "mean_prompt_tokens": counts["mean_prompt_tokens"],
                     "repeats": args.repeats, "batch_size": args.batch_size, "concurrency": args.concurrency,
                     "fake_server_latency_ms": args.latency_ms, "torch_threads": args.threads, **machine,
                     "candidate_set": "builtin held-out tasks: the reference + perturbed wrong answers, shuffled"},
    }, indent=1))


if __name__ == "__main__":
    main()
