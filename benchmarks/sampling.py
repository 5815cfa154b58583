"""Sampling throughput per backend: transformers (both decode loops) against vLLM, on the same prompts and settings.

Why: Tuna samples N candidates for every instruction twice (the teacher for Tuna_p, the student for Tuna_c), so
sampling speed bounds how large a run can be. This script puts numbers on the backends of
``tuna_open.generate`` (prompts/s and generated tokens/s): ``hf`` (transformers in this process, the default
``decode: prefill_once`` loop) and ``hf_generate`` (the same with ``decode: generate``, transformers' own loop;
the two are loaded together and their timed passes alternate, so a busy shared CPU slows both alike; both must
draw the same samples, which ``hf.same_samples_as_hf_generate`` checks on the last pass), ``hf_fast`` and
``hf_bf16`` (``match_generate: false``, inverse-CDF sampling, in fp32 and in bf16; ``hf_bf16.vs_fp32`` says what
bf16 changes in log-probabilities and in Tuna_p's rankings of its samples), a vLLM OpenAI-compatible server driven
by the ``openai`` sampler, and the in-process ``vllm`` engine when vllm imports in this interpreter. Every
backend's ``vs_hf_fp32`` (``reported_drift``) says what its own log-probs (the ones Tuna_p ranks by by default)
differ from fp32 teacher forcing of its samples, on the samples that ended with EOS (numerics: ``hf`` is the
fp32 control) and in Tuna_p's rankings of all of them (samples cut at ``--max-new-tokens`` included); the
in-process engine's ``teacher_forced_vs_hf_fp32`` compares vLLM's teacher forcing in ``--vllm-dtype`` with
transformers' in fp32, on the same tokens. Every backend gets the same prompts (the builtin held-out tasks in the
Alpaca template) and the same ``SamplingParams`` (n samples per prompt, log-probs on, as Tuna_p needs), one untimed
warm-up batch first, then ``--repeats`` timed passes (medians reported). Generated tokens are the samples'
``num_tokens`` (EOS included), which every backend reports when log-probs are on.

The model is a random-init tiny Llama built here (tokenizer trained on the builtin tasks, as the ``init_model``
stage does) unless ``--model`` names a directory (e.g. ``runs/quickstart/stages/sft/model``) or a model reference
(``smollm2-135m-instruct``: real weights, converted once and cached by ``tuna_open.models``). A random model rarely
emits EOS, so its samples run to ``--max-new-tokens``: the same decode work on every backend; a real model stops
when it is done, so compare the backends' tokens/s (``mean_tokens_per_sample`` says how long the samples were).

The vLLM server is the test suite's ``VLLMServer`` (``tests/helpers/vllm_server.py``: free loopback port, its own
process group, prefix caching off), started with ``--vllm-python`` or ``$VLLM_PYTHON`` (vLLM's CPU build lives in its
own venv), with chunked prefill off (``CHUNKED_PREFILL_OFF``: on CPU, vLLM 0.27.1 crashes on seeded requests whose
prefill is split). It starts once, after the in-process backends are measured, so they never share the CPU with it.
The in-process engine (measured when this script runs with vLLM's interpreter) turns chunked prefill off on CPU by
default (``EngineSettings``); if it dies anyway it is listed under ``failed``, with vLLM's log on stderr. The openai
sampler keeps ``--concurrency`` prompts in flight (default: the transformers batch size, so both have the same work in
flight). A backend that cannot run is listed under ``skipped``, one that broke during the run under ``failed``, each
with the reason; no number is ever estimated for either.

    python benchmarks/sampling.py
    VLLM_PYTHON=.venv-vllm/bin/python python benchmarks/sampling.py --prompts 64
    python benchmarks/sampling.py --model runs/quickstart/stages/sft/model --max-new-tokens 64
    PYTHONPATH=. .venv-vllm/bin/python benchmarks/sampling.py --model smollm2-135m-instruct   # all three backends

``benchmarks/ranking.py`` reuses this module's model builder, vLLM server start and device description.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

import roofline
import torch

from rankers.base import order_from_scores
from rankers.llm.templates import format_prompt
from tuna_open.builtin.model import BUILTIN_MODELS, init_model, train_tokenizer
from tuna_open.builtin.tasks import corpus, generate
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import Sampler, SamplingParams
from tuna_open.models import is_model_ref, resolve_model

REPO = Path(__file__).resolve().parents[1]
# The test suite's server helpers are the benchmarks' too: one implementation of "start a real vLLM server" and
# of "a local OpenAI-protocol server", not a copy per script.
sys.path.insert(0, str(REPO / "tests"))
from helpers.vllm_server import PLAIN_CHAT_TEMPLATE, ServerStartError, VLLMServer, vllm_python  # noqa: E402

TOKENIZER_CORPUS = 2000
"""Builtin task texts the tokenizer is trained on (the ``init_model`` stage's default)."""
VOCAB_SIZE = 512


class Skipped(Exception):
    """A backend that cannot run here; the message is the reason printed under ``skipped``."""


# --- shared with benchmarks/ranking.py ---------------------------------------------------------------------


def build_tiny_model(out_dir: Path, architecture: str = "student", seed: int = 0) -> Path:
    """A random-init builtin Llama with its tokenizer trained on the builtin tasks, as the ``init_model`` stage
    builds the quickstart's models (no download)."""
    tokenizer = train_tokenizer(corpus(TOKENIZER_CORPUS, seed), out_dir, vocab_size=VOCAB_SIZE)
    init_model(BUILTIN_MODELS[architecture], tokenizer, out_dir, seed=seed)
    return out_dir


def model_for(args: argparse.Namespace, workdir: Path) -> tuple[str, str]:
    """(model directory, description): ``--model`` if given (a directory or a model reference such as
    ``smollm2-135m-instruct``, converted once and cached), else a tiny model built in ``workdir``."""
    if args.model:
        if is_model_ref(args.model):
            return resolve_model(args.model), args.model
        if not Path(args.model).is_dir():
            raise SystemExit(f"error: --model {args.model} is neither a directory nor a model reference")
        return args.model, args.model
    arch = BUILTIN_MODELS[args.architecture]
    path = build_tiny_model(workdir / "model", args.architecture, args.seed)
    return str(path), (f"random-init builtin {args.architecture} Llama (hidden {arch.hidden_size}, "
                       f"{arch.num_hidden_layers} layers, vocab {VOCAB_SIZE})")


def torch_device() -> str:
    """Where in-process torch work runs: the GPU's name, or the CPU with the thread count torch uses."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu ({torch.get_num_threads()} threads)"


def host() -> dict[str, Any]:
    """The machine's CPU count and 1-minute load average, taken before the benchmark's own work: on a shared
    machine other processes' threads compete with torch's and vLLM's, and the numbers mean little without it."""
    return {"cpu_count": os.cpu_count(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}


def resolve_vllm_python(flag: str | None) -> str:
    """The interpreter that has vLLM (``--vllm-python``, else ``$VLLM_PYTHON``, else this one if vllm imports)."""
    if flag:
        if not Path(flag).is_file():
            raise Skipped(f"--vllm-python {flag} does not exist")
        return flag
    try:
        python = vllm_python()
    except FileNotFoundError as err:
        raise Skipped(str(err)) from None
    if python is None:
        raise Skipped("no interpreter with vllm: pass --vllm-python or set $VLLM_PYTHON (.ci/install_vllm.sh)")
    return python


def has_chat_template(model: str) -> bool:
    """Whether a local model directory ships a chat template (``chat_template.jinja`` or in its tokenizer config)."""
    path = Path(model)
    config = path / "tokenizer_config.json"
    return (path / "chat_template.jinja").is_file() or (
        config.is_file() and bool(json.loads(config.read_text()).get("chat_template")))


CHUNKED_PREFILL_OFF = ("--no-enable-chunked-prefill",)
"""vLLM 0.27.1 on CPU kills its engine ("CPU Generator does not use offset") when a seeded request's prefill is
split over two steps: the model runner rewinds the request's generator offset, which CPU generators lack. Seeded
sampling of more prompt tokens than a step's budget (e.g. 32 prompts x n=4 x ~60 tokens > 2,048) splits one."""


@contextlib.contextmanager
def vllm_server(model: str, python_flag: str | None, enforce_eager: bool = True,
                extra_args: Sequence[str] = ()) -> Iterator[VLLMServer]:
    """A started vLLM server for ``model``, closed on exit; ``Skipped`` (with the log's last line) if it can't start.

    Prefix caching stays off: vLLM 0.27.1 returns NaN/stale prompt log-probs for prefix-cache hits. A model that
    ships a chat template (a real instruct model) is served with it; only one without gets the plain template.
    """
    python = resolve_vllm_python(python_flag)
    template = None if has_chat_template(model) else PLAIN_CHAT_TEMPLATE
    try:
        server = VLLMServer(model, python=python, enforce_eager=enforce_eager, prefix_caching=False,
                            chat_template=template, extra_args=extra_args).start()
    except ServerStartError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        last = f" ... {lines[-1]}" if len(lines) > 1 else ""  # the log's last line usually names the cause
        raise Skipped(f"the vLLM server ({python}) did not start: {lines[0]}{last}") from None
    try:
        yield server
    finally:
        server.close()


def close(resource: object) -> None:
    """Free what a sampler or a ranker holds (an engine, a model, an HTTP pool); ``close`` is optional for both."""
    closer = getattr(resource, "close", None)
    if closer is not None:
        closer()


def one_line(err: BaseException) -> str:
    """An exception as one bounded line for the JSON's ``failed`` entries."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:1000]


@contextlib.contextmanager
def server_errors(server: VLLMServer) -> Iterator[None]:
    """Re-raise a failure while talking to ``server`` with the root cause from its log: an HTTP 500 only says
    "EngineCore encountered an issue", and the log, which names the error, is deleted when the server closes.
    The cause is the first exception logged at ERROR level (the worker's; the engine's and the API server's
    follow it and only wrap it)."""
    try:
        yield
    except Exception as err:
        causes = [line for line in server.log_tail(600).splitlines()
                  if " ERROR " in line and re.search(r"\b\w+(Error|Exception): ", line)]
        cause = f" (server log: {causes[0].split('] ', 1)[-1].strip()})" if causes else ""
        raise RuntimeError(f"{one_line(err)}{cause}") from err


def describe_server(server: VLLMServer) -> dict[str, Any]:
    """What served the requests: vLLM's version (its ``/version`` endpoint), interpreter and start-up time."""
    try:
        with urllib.request.urlopen(server.base_url.removesuffix("/v1") + "/version", timeout=5) as response:
            version = json.load(response).get("version")
    except (OSError, ValueError):
        version = None
    return {"vllm_version": version, "python": server.python,
            "startup_s": round(server.startup_seconds or 0.0, 1), "prefix_caching": server.prefix_caching,
            "enforce_eager": server.enforce_eager, "extra_args": server.extra_args}


# --- sampling ----------------------------------------------------------------------------------------------


def benchmark_prompts(count: int, seed: int) -> list[str]:
    """Templated prompts of the builtin held-out tasks (the quickstart's sampling inputs)."""
    return [format_prompt(r["instruction"], r["input"]) for r in generate("heldout", count, seed)]


def timed_pass(sampler: Sampler, prompts: Sequence[str], params: SamplingParams) -> tuple[float, int, list]:
    """(seconds, generated tokens, samples) of one pass of ``sampler`` over ``prompts``."""
    start = time.perf_counter()
    samples = sampler.generate(prompts, params)
    seconds = time.perf_counter() - start
    counts = [s.num_tokens for row in samples for s in row]
    if len(counts) != len(prompts) * params.n or any(c is None for c in counts):
        raise RuntimeError(f"{type(sampler).__name__} returned {len(counts)} samples or no token counts "
                           f"({len(prompts)} prompts x n={params.n} with logprobs were asked)")
    return seconds, sum(counts), samples  # type: ignore[arg-type]


def summary(passes: Sequence[tuple[float, int, list]], prompts: int, n: int) -> dict[str, Any]:
    """Prompts/s, samples/s and generated tokens/s (medians over the timed passes)."""
    seconds = [p[0] for p in passes]
    return {
        "prompts_per_s": round(statistics.median(prompts / s for s in seconds), 2),
        "samples_per_s": round(statistics.median(prompts * n / s for s in seconds), 2),
        "tokens_per_s": round(statistics.median(t / s for s, t, _ in passes), 1),
        "mean_tokens_per_sample": round(statistics.fmean(p[1] for p in passes) / (prompts * n), 1),
        "seconds": [round(s, 3) for s in seconds],
    }


HF_VARIANTS = {
    "hf": {"decode": "prefill_once"},
    "hf_generate": {"decode": "generate"},
    "hf_fast": {"decode": "prefill_once", "match_generate": False},
    "hf_bf16": {"decode": "prefill_once", "match_generate": False, "dtype": "bfloat16"},
}
"""The transformers configurations timed: the default (draws ``generate``'s samples), the reference loop, inverse-CDF
sampling in fp32, and the same in bf16 (the fast path on a CPU with native bf16)."""


def bench_hf_decodes(model: str, args: argparse.Namespace, warmup: list[str], prompts: list[str],
                     params: SamplingParams) -> dict[str, dict[str, Any]]:
    """Every ``HF_VARIANTS`` sampler on the same prompts, their timed passes alternating."""
    samplers = {name: build_sampler(model, SamplerChoice(backend="hf", hf={"batch_size": args.hf_batch_size,
                                                                           **settings}))
                for name, settings in HF_VARIANTS.items()}
    try:
        for sampler in samplers.values():
            sampler.generate(warmup, params)
        passes: dict[str, list[tuple[float, int, list]]] = {name: [] for name in HF_VARIANTS}
        for _ in range(args.repeats):
            for name, sampler in samplers.items():
                passes[name].append(timed_pass(sampler, prompts, params))
    finally:
        for sampler in samplers.values():
            close(sampler)
    out = {name: {**summary(runs, len(prompts), params.n), "device": torch_device(),
                  "decode": samplers[name].decode, "config": HF_VARIANTS[name]} for name, runs in passes.items()}
    new, reference = (passes[name][-1][2] for name in ("hf", "hf_generate"))
    out["hf"]["same_samples_as_hf_generate"] = all(
        (a.text, a.num_tokens) == (b.text, b.num_tokens) for x, y in zip(new, reference) for a, b in zip(x, y))
    out["hf"]["max_logprob_diff_vs_hf_generate"] = max(
        abs(a.logprob - b.logprob) for x, y in zip(new, reference) for a, b in zip(x, y))  # type: ignore[operator]
    for name in HF_VARIANTS:
        out[name]["tokens_per_s_vs_hf_generate"] = round(out[name]["tokens_per_s"]
                                                         / out["hf_generate"]["tokens_per_s"], 2)
    for name in HF_VARIANTS:  # "hf" is the control: fp32 log-probs, so its drift is the text round trip's alone
        samples = passes[name][-1][2]
        fp32 = teacher_forced(model, prompts, samples, "float32")
        out[name]["vs_hf_fp32"] = reported_drift(samples, fp32, params.max_new_tokens)
        if name == "hf_bf16":
            out[name]["vs_fp32"] = bf16_drift(model, prompts, samples, fp32)
    return out


def bf16_drift(model: str, prompts: Sequence[str], samples: Sequence[Sequence[Any]],
               fp32: Sequence[Sequence[tuple[float, int]]]) -> dict[str, Any]:
    """What bf16 changes, on bf16's own samples: each scored (teacher-forced, the Tuna_p ranker's scorer, EOS
    appended) by the model in bf16 against ``fp32``, their ``teacher_forced`` scores in fp32 (``compare_scores``
    says what each figure is)."""
    return compare_scores(teacher_forced(model, prompts, samples, "bfloat16"), fp32)


def reported_drift(samples: Sequence[Sequence[Any]], fp32: Sequence[Sequence[tuple[float, int]]],
                   max_new_tokens: int) -> dict[str, Any]:
    """What a sampler's own log-probs (computed in its dtype while sampling: what the ``teacher_logprob`` ranker
    uses with ``use_request_logprobs: true``, its default) differ from fp32 teacher forcing of the same texts (what
    it uses with ``false``; ``fp32``: ``teacher_forced`` of the samples).

    The log-prob figures count only samples that ended with EOS and whose text re-tokenises to the same count
    (``comparable``): mostly the same tokens on both sides, so the difference is numerics (dtype, kernels), but a
    sampled split of a word that is not the tokenizer's own can re-tokenise otherwise at the same count (fp32
    ``hf_fast`` shows up to 2.9 nats from that alone); the teacher-forced comparisons are the clean numerics. A
    sample cut at ``max_new_tokens`` (``cut``) is another quantity on each side: the sampler's sum has no EOS term,
    teacher forcing appends one the model never produced, and the cut text re-tokenises to other tokens; the
    rankings (every sample, as the ranker ranks) show what that difference does to Tuna_p."""
    reported = [[(s.logprob, s.num_tokens) for s in row] for row in samples]
    ended = [[s.num_tokens < max_new_tokens for s in row] for row in samples]
    return {"cut": sum(not e for row in ended for e in row),
            **compare_scores(reported, fp32, ended)}


def teacher_forced(model: str, prompts: Sequence[str], samples: Sequence[Sequence[Any]], dtype: str,
                   engine: str = "hf") -> list[list[tuple[float, int]]]:
    """(summed log-prob, tokens with EOS) of every sample's text under ``model`` in ``dtype``, scored by the
    ``teacher_logprob`` ranker's ``hf`` or ``vllm`` engine (the same tokens either way: ``encode_pairs``)."""
    if engine == "vllm":
        from rankers.backends.teacher_logprob import Config
        from rankers.logprob.vllm_scorer import make_scorer

        scorer: Any = make_scorer(Config(backend="teacher_logprob", model=model, engine="vllm", dtype=dtype))
    else:
        from rankers.logprob.hf_scorer import HFLogprobScorer
        from tuna_open.generate.hf_sampler import load_causal_lm

        scorer = HFLogprobScorer(*load_causal_lm(model, dtype))
    try:
        with torch.no_grad():
            return scorer.score(list(prompts), [[s.text for s in row] for row in samples])
    finally:
        scorer.close()


def compare_scores(test: Sequence[Sequence[tuple[float, int]]], fp32: Sequence[Sequence[tuple[float, int]]],
                   usable: Sequence[Sequence[bool]] | None = None) -> dict[str, Any]:
    """``test``'s (log-prob, tokens) per sample against fp32's, prompt by prompt.

    ``logprob_abs_diff_*``: |test − fp32| of a sample's summed log-probability; ``kl_per_token``: the mean of
    (test − fp32) log-probability per token, an estimate of KL(test ‖ fp32) per token when the samples are test's
    own; both over the ``comparable`` samples (``usable``, default all, with the same token count on both sides).
    ``same_ranking`` / ``same_top1``: the share of prompts whose samples (all of them), ordered by
    length-normalised log-probability (Tuna_p's score, ties by index), come out in the same order / with the same
    best under both."""
    usable = usable or [[True] * len(row) for row in test]
    pairs = [(t, f) for rt, rf, ru in zip(test, fp32, usable) for t, f, u in zip(rt, rf, ru) if u and t[1] == f[1]]
    diffs = [t[0] - f[0] for t, f in pairs]

    def order(row: Sequence[tuple[float, int]]) -> list[int]:  # the teacher_logprob ranker's order at lenpen 1
        return order_from_scores([lp / n for lp, n in row])

    orders = [(order(t), order(f)) for t, f in zip(test, fp32)]
    out: dict[str, Any] = {"samples": sum(len(row) for row in fp32), "comparable": len(pairs),
                           "tokens": sum(f[1] for _, f in pairs)}
    if pairs:
        out.update(logprob_abs_diff_mean=round(statistics.fmean(abs(d) for d in diffs), 4),
                   logprob_abs_diff_max=round(max(abs(d) for d in diffs), 4),
                   kl_per_token=round(sum(diffs) / out["tokens"], 5))
    return {**out, "same_ranking": round(statistics.fmean(t == f for t, f in orders), 3),
            "same_top1": round(statistics.fmean(t[0] == f[0] for t, f in orders), 3)}


def run_backend(choice: SamplerChoice, model: str, args: argparse.Namespace, warmup: list[str],
                prompts: list[str], params: SamplingParams, scoring_model: str | None = None,
                engine_numerics: bool = False) -> dict[str, Any]:
    """Speed of one vLLM sampler, and on its last pass's samples, scored in fp32 by ``model`` (``scoring_model``:
    the same weights on disk when a server renamed the model): ``vs_hf_fp32`` (``reported_drift``: its own
    log-probs) and with ``engine_numerics`` ``teacher_forced_vs_hf_fp32`` (the same texts teacher-forced by an
    in-process vLLM engine in ``--vllm-dtype``: its numerics on identical tokens, what ``hf_bf16.vs_fp32`` is for
    transformers)."""
    sampler = build_sampler(model, choice)
    try:
        sampler.generate(warmup, params)  # loads kernels, fills caches, opens connections: not what is measured
        passes = [timed_pass(sampler, prompts, params) for _ in range(args.repeats)]
    finally:
        close(sampler)
    scoring_model, samples = scoring_model or model, passes[-1][2]
    fp32 = teacher_forced(scoring_model, prompts, samples, "float32")
    out = {**summary(passes, len(prompts), params.n),
           "vs_hf_fp32": reported_drift(samples, fp32, params.max_new_tokens)}
    if engine_numerics:
        out["teacher_forced_vs_hf_fp32"] = compare_scores(
            teacher_forced(scoring_model, prompts, samples, args.vllm_dtype, "vllm"), fp32)
    return out


def bench_vllm_inprocess(model: str, args: argparse.Namespace, warmup: list[str], prompts: list[str],
                         params: SamplingParams) -> dict[str, Any]:
    """The in-process engine (``backend: vllm``), when vllm imports in this interpreter."""
    if importlib.util.find_spec("vllm") is None:
        raise Skipped(f"vllm is not importable by {sys.executable} (run this script with the vLLM interpreter to "
                      f"measure the in-process engine)")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; only read on CPU (the default is 4)
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout carries only the JSON
    choice = SamplerChoice(backend="vllm", vllm={"dtype": args.vllm_dtype, "enforce_eager": args.enforce_eager})
    try:
        return run_backend(choice, model, args, warmup, prompts, params, engine_numerics=True)
    except Exception as err:
        raise RuntimeError(f"{one_line(err)} (vLLM's log on stderr names the cause)") from err


def bench_vllm_server(model: str, args: argparse.Namespace, warmup: list[str], prompts: list[str],
                      params: SamplingParams) -> dict[str, Any]:
    """A vLLM server driven by the ``openai`` sampler, ``--concurrency`` prompts in flight."""
    extra_args = (*CHUNKED_PREFILL_OFF, "--dtype", args.vllm_dtype)
    with vllm_server(model, args.vllm_python, args.enforce_eager, extra_args=extra_args) as server:
        choice = SamplerChoice(backend="openai", openai={"base_url": server.base_url, "api_key": "EMPTY",
                                                         "max_concurrency": args.concurrency, "max_retries": 0})
        with server_errors(server):
            return {**run_backend(choice, server.model, args, warmup, prompts, params, scoring_model=model),
                    "server": describe_server(server)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: build a random-init tiny Llama)")
    parser.add_argument("--architecture", choices=sorted(BUILTIN_MODELS), default="student",
                        help="size of the built model (ignored with --model)")
    parser.add_argument("--prompts", type=int, default=32, help="timed prompts per pass")
    parser.add_argument("--warmup", type=int, default=8, help="prompts of the untimed warm-up batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend (medians reported)")
    parser.add_argument("--n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hf-batch-size", type=int, default=32, help="prompts per transformers batch")
    parser.add_argument("--concurrency", type=int, help="openai sampler requests in flight (default: --hf-batch-size)")
    parser.add_argument("--vllm-python", help="interpreter with vllm for the server (default: $VLLM_PYTHON)")
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True,
                        help="vLLM without torch.compile/CUDA graphs (on CPU compiling costs a minute)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (transformers)")
    parser.add_argument("--vllm-dtype", choices=("float32", "bfloat16", "auto"), default="float32",
                        help="vLLM's dtype, both backends (auto: vLLM's choice, bfloat16 for a float32 checkpoint "
                             "on an x86 CPU, whether or not the CPU has native bf16)")
    args = parser.parse_args()
    machine = host()
    torch.set_num_threads(args.threads)
    roof = roofline.measure()
    args.concurrency = args.concurrency or args.hf_batch_size

    params = SamplingParams(n=args.n, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, seed=args.seed, logprobs=True)
    every = benchmark_prompts(args.warmup + args.prompts, args.seed)
    warmup, prompts = every[:args.warmup], every[args.warmup:]
    backends: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}

    with tempfile.TemporaryDirectory(prefix="bench-sampling-") as tmp:
        model, model_desc = model_for(args, Path(tmp))
        parameters = roofline.parameter_count(model)
        backends.update(bench_hf_decodes(model, args, warmup, prompts, params))
        for name, bench in (("vllm_inprocess", bench_vllm_inprocess), ("vllm_server", bench_vllm_server)):
            try:
                backends[name] = bench(model, args, warmup, prompts, params)
            except Skipped as reason:
                skipped[name] = str(reason)
            except Exception as err:  # vLLM dying mid-run is a finding to report, not a reason to lose the rest
                failed[name] = one_line(err)

    hf_rate = backends["hf"]["tokens_per_s"]
    for name, result in backends.items():
        if not name.startswith("hf"):
            result["tokens_per_s_vs_hf"] = round(result["tokens_per_s"] / hf_rate, 2)
        result.update(roofline.fraction(parameters, result["tokens_per_s"], roof,
                                        roofline.FORWARD_FLOPS_PER_PARAM))
    print(json.dumps({
        "backends": backends,
        "roofline": roof,
        "parameters": parameters,
        "skipped": skipped,
        "failed": failed,
        "model": model_desc,
        "settings": {"prompts": args.prompts, "warmup_prompts": args.warmup, "repeats": args.repeats,
                     "sampling_params": params.model_dump(), "hf_batch_size": args.hf_batch_size,
                     "openai_concurrency": args.concurrency, "torch_threads": args.threads,
                     "vllm_dtype": args.vllm_dtype,
                     "vllm_cpu_env": {k: v for k, v in os.environ.items() if k.startswith("VLLM_CPU_")}, **machine},
    }, indent=1))


if __name__ == "__main__":
    main()
