"""benchmarks/gpu_session.py: the two-call transport of the model, the jobs' results and their time limits."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import pytest
from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_session  # noqa: E402


def carried_calls(tmp_path, payload: bytes, first: int):
    """A file split as ``prepare`` splits the GGUF: part 0 in call 1, part 1 in call 2, the manifest in both."""
    source = tmp_path / "model.gguf"
    source.write_bytes(payload)
    call1, call2 = tmp_path / "call1", tmp_path / "call2"
    parts = gpu_session.split_file(source, first, (call1 / "gguf" / "model.gguf.part0",
                                                   call2 / "gguf" / "model.gguf.part1"))
    manifest = {"name": "model.gguf", "sha256": hashlib.sha256(payload).hexdigest(),
                "target": "gguf/abc/model.gguf", "parts": parts}
    for call in (call1, call2):
        (call / "gguf" / "manifest.json").write_text(json.dumps(manifest))
    return call1, call2


def test_the_model_split_over_two_calls_is_put_together_byte_for_byte(tmp_path):
    payload = bytes(range(256)) * 1000
    call1, call2 = carried_calls(tmp_path, payload, first=100_001)
    stash, cache = tmp_path / "stash", tmp_path / "cache"
    gpu_session.stash_files(call1, stash)
    ready, why = gpu_session.assemble_gguf(stash, cache)
    assert ready is False and "model.gguf.part1 missing" in why  # call 2 has not arrived
    gpu_session.stash_files(call2, stash)
    ready, why = gpu_session.assemble_gguf(stash, cache)
    assert ready is True and "from 2 parts" in why
    assert (cache / "gguf/abc/model.gguf").read_bytes() == payload
    assert gpu_session.assemble_gguf(stash, cache) == (True, "model.gguf already assembled")


def test_a_corrupted_part_is_refused_and_leaves_no_model_behind(tmp_path):
    call1, call2 = carried_calls(tmp_path, b"x" * 5000, first=2000)
    (call2 / "gguf" / "model.gguf.part1").write_bytes(b"y" * 3000)
    stash, cache = tmp_path / "stash", tmp_path / "cache"
    for call in (call1, call2):
        gpu_session.stash_files(call, stash)
    ready, why = gpu_session.assemble_gguf(stash, cache)
    assert ready is False and "sha256" in why
    assert not list(cache.rglob("*.gguf*"))


def test_nothing_carried_is_said_so(tmp_path):
    assert gpu_session.assemble_gguf(tmp_path, tmp_path / "cache") == (None, "no GGUF was carried")


def test_a_stash_that_was_not_carried_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="not a directory"):
        gpu_session.stash_files(tmp_path / "absent", tmp_path / "stash")


def test_a_stash_that_is_its_own_stash_dir_is_kept_and_a_nested_one_refused(tmp_path):
    (tmp_path / "call").mkdir()
    (tmp_path / "call" / "part").write_bytes(b"kept")
    gpu_session.stash_files(tmp_path / "call", tmp_path / "call")
    assert (tmp_path / "call" / "part").read_bytes() == b"kept"
    with pytest.raises(SystemExit, match="inside one another"):
        gpu_session.stash_files(tmp_path / "call", tmp_path / "call" / "stash")
    with pytest.raises(SystemExit, match="inside one another"):
        gpu_session.stash_files(tmp_path / "call", tmp_path)
    assert (tmp_path / "call" / "part").read_bytes() == b"kept" and not (tmp_path / "call" / "stash").exists()


def test_wheel_versions_are_the_lock_files():
    pins = gpu_session.locked_versions(gpu_session.WHEELS + gpu_session.BUILT_WHEELS)
    lock = (ROOT / "requirements-lock.txt").read_text()
    assert all(pin in lock for pin in pins) and any(p.startswith("transformers==") for p in pins)
    with pytest.raises(SystemExit, match="no-such-dist"):
        gpu_session.locked_versions(("no-such-dist",))


def test_the_last_json_object_is_read_past_library_chatter():
    text = 'loading...\n{"not": "closed"\nwarning: {x}\n{\n "a": {"b": 1},\n "c": [1]\n}\n'
    assert gpu_session.last_json(text) == {"a": {"b": 1}, "c": [1]}
    with pytest.raises(ValueError):
        gpu_session.last_json("no json here\n")


def test_a_job_past_its_time_is_killed_with_its_children(tmp_path):
    # The job starts a grandchild that would outlive a plain kill of the job (a trainer's worker, a server).
    pidfile = tmp_path / "grandchild.pid"
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
              f"time.sleep(60)']); open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    job = gpu_session.Job("sleeper", [sys.executable, "-c", script], cap_s=60, output="x.json")
    with open(tmp_path / "log", "w") as log:
        started = time.monotonic()
        status, seconds, _ = gpu_session.run_job(job, {}, timeout=2, log=log)
    assert status == "timed out after 2 s" and time.monotonic() - started < 30
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = subprocess.run(["ps", "-o", "stat=", "-p", str(grandchild)], capture_output=True, text=True).stdout
        if not alive.strip() or alive.strip().startswith("Z"):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the job's grandchild survived its timeout")


def test_a_failing_job_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch):
    ok = gpu_session.Job("ok", [sys.executable, "-c", "print('{\"x\": 1}')"], 30, "a_gpu.json", part="one")
    bad = gpu_session.Job("bad", [sys.executable, "-c", "raise SystemExit(3)"], 30, "a_gpu.json", part="two")
    late = gpu_session.Job("late", [sys.executable, "-c", "print('{}')"], 30, "b_gpu.json", needs_model=True)
    monkeypatch.setattr(gpu_session, "jobs", lambda out, stash, smoke: [bad, ok, late])
    monkeypatch.delenv("TUNA_OPEN_CACHE", raising=False)
    args = gpu_session.argparse.Namespace(out=tmp_path / "out", stash=None, stash_dir=tmp_path / "stash",
                                          deadline_s=60, only=None, smoke=True)
    assert gpu_session.run(args) == 1
    summary = json.loads((tmp_path / "out" / "gpu_session.json").read_text())
    assert summary["jobs"]["bad"]["status"] == "failed (exit 3)"
    assert summary["jobs"]["ok"]["status"] == "ok"
    assert summary["jobs"]["late"]["status"] == "skipped: no GGUF was carried"
    assert json.loads((tmp_path / "out" / "a_gpu.json").read_text())["one"]["x"] == 1
    assert not (tmp_path / "out" / "b_gpu.json").exists()


@pytest.mark.slow
def test_the_session_runs_the_cuda_step_benchmark_on_a_cpu_in_smoke_mode(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "run", "--smoke",
                           "--only", "tuna_step_default", "tuna_step_long_prompt", "--out", str(out),
                           "--stash-dir", str(tmp_path / "stash")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = json.loads((out / "tuna_step_gpu.json").read_text())
    assert set(steps) == {"default", "long_prompt"}
    assert steps["long_prompt"]["shape"]["prompt_len"] == 256 and steps["default"]["time_ratio_shared"] > 0


def test_the_second_call_on_a_fresh_machine_says_so_before_any_job(tmp_path):
    # The machine went back between the two calls: call 2's stash lacks call 1's wheels and model part.
    args = gpu_session.argparse.Namespace(out=tmp_path / "out", stash=None, stash_dir=tmp_path / "stash",
                                          deadline_s=60, only=None, smoke=False)
    with pytest.raises(SystemExit, match="did not run on this machine"):
        gpu_session.run(args)
    assert not (tmp_path / "out" / "gpu_session.json").exists()
