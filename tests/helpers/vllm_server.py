"""A real vLLM OpenAI-compatible server on CPU, started as a subprocess for integration tests.

Why a subprocess (and possibly another interpreter): the vLLM CPU build pins its own torch and pulls packages
that break this project's stack, so CI installs it in a separate venv (``.ci/install_vllm.sh``) and names that
venv's python in ``VLLM_PYTHON``. The test client stays in the main venv and talks HTTP, exactly as a recipe
pointing ``base_url`` at a vLLM server does.

Usage::

    from helpers.vllm_server import VLLMServer, vllm_python   # tests/ is on pytest's path (pyproject)

    python = vllm_python()                 # None: no interpreter with vllm; skip
    with VLLMServer(model_dir, python=python) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY")
        client.completions.create(model=server.model, ...)

The server binds 127.0.0.1 on a free port, logs to a file (its tail is in every startup error), and runs in
its own process group so ``close`` can stop the API server and the engine processes it spawned, and nothing else.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
"""For tokenizers without a chat template (the tests' tiny model): vLLM's chat endpoint refuses to guess one."""


def vllm_python() -> str | None:
    """The interpreter that has vLLM: ``$VLLM_PYTHON`` if set, else this one when vllm is importable, else None.

    ``$VLLM_PYTHON`` naming a missing file is an error, not a skip: CI set it, so the install step broke.
    """
    python = os.environ.get("VLLM_PYTHON")
    if python:
        if not Path(python).is_file():
            raise FileNotFoundError(f"VLLM_PYTHON={python} does not exist (run .ci/install_vllm.sh)")
        return python
    return sys.executable if importlib.util.find_spec("vllm") is not None else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log tail."""


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` for one local model dir (see the module docstring).

    ``max_model_len`` may exceed the model's ``max_position_embeddings`` (vLLM is told to allow it): the tests'
    random tiny model has 512 positions, but the contextual judge prompt alone is ~1,100 of its tokens, and
    rotary positions extend without error. ``enforce_eager`` skips torch.compile, which costs a minute on CPU and
    buys nothing for a model this small. Prefix caching is off unless asked: on CPU, vLLM 0.27.1 returns NaN
    log-probs for prefix-cache hits (and stale prompt log-probs on any device, vllm-project/vllm#42019).
    """

    def __init__(self, model: str | Path, python: str | None = None, *, max_model_len: int = 2048,
                 chat_template: str | None = PLAIN_CHAT_TEMPLATE, enforce_eager: bool = True,
                 prefix_caching: bool = False, kv_cache_gib: int = 1, extra_args: Sequence[str] = (),
                 startup_timeout: float = 600.0) -> None:
        self.model = str(model)
        self.python = python or sys.executable
        self.max_model_len = max_model_len
        self.chat_template = chat_template
        self.enforce_eager = enforce_eager
        self.prefix_caching = prefix_caching
        self.kv_cache_gib = kv_cache_gib
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("server not started")
        return Path(self._workdir.name) / "server.log"

    def command(self) -> list[str]:
        assert self.port is not None
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
               "--max-model-len", str(self.max_model_len), "--seed", "0"]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        cmd.append("--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching")
        if self.chat_template is not None:
            template = Path(self._workdir.name) / "chat_template.jinja"
            template.write_text(self.chat_template)
            cmd += ["--chat-template", str(template)]
        return cmd + self.extra_args

    def start(self) -> "VLLMServer":
        self._workdir = tempfile.TemporaryDirectory(prefix="vllm-server-")
        self.port = free_port()
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
               "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        self._log = open(self.log_path, "wb")
        started = time.monotonic()
        self._proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            self._wait_ready(started + self.startup_timeout)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerStartError(f"vLLM server exited with code {self._proc.returncode}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1.0)
        raise ServerStartError(f"vLLM server not ready after {self.startup_timeout:.0f}s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def close(self, grace: float = 30.0) -> None:
        """SIGTERM the server's process group (API server + engine core + workers), SIGKILL after ``grace``."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self._proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _signal(self, sig: int) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)  # the group was created for this server (start_new_session)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
