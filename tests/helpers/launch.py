"""Launching multi-process runs from tests (``torchrun``, ``accelerate launch``): a free rendezvous port and a
subprocess that fails the test with its stderr. Shared by the DDP and distributed tests; a helper module, not a
test module, so that no test file imports another."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], cwd: Path) -> None:
    """``cmd`` on CPU only, one OpenMP thread per process so that several processes do not oversubscribe the
    cores; a non-zero exit fails the test with the end of its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
