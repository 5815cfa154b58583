"""``tuna_open.distributed`` under a real 2-process launch (torchrun, gloo on CPU): main-only work runs once,
its result or its error reaches every process, and the shared save is published once, whole."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from helpers.launch import free_port, run
from helpers.paths import HELPERS

from tuna_open import distributed

WORKER = HELPERS / "distributed_worker.py"


def test_single_process_helpers_are_plain_calls(tmp_path: Path) -> None:
    assert distributed.on_main(lambda: 42) == 42 and distributed.is_main()
    distributed.barrier()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old").write_text("old")
    with distributed.atomic_output_dir(tmp_path / "model") as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["new"]


def test_two_processes_share_one_main(tmp_path: Path) -> None:
    run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
         str(WORKER), str(tmp_path)], tmp_path)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["main"] for s in seen] == [True, False]
    assert sorted(p.name for p in tmp_path.glob("ran-on-*")) == ["ran-on-0"]  # the work ran once, on rank 0
    assert [s["result"] for s in seen] == [{"from": 0}, {"from": 0}]  # and both got its result
    assert [s["user_error"] for s in seen] == ["bad recipe key"] * 2  # a user error stays one, everywhere
    assert seen[0]["error"] == "ZeroDivisionError: division by zero"
    assert seen[1]["error"] == "RuntimeError: the main process failed: ZeroDivisionError: division by zero"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["part-0", "part-1"]
    assert not list(tmp_path.glob(".model*"))  # no scratch or .old directory left
