"""Run by ``test_distributed.py`` under torchrun (2 processes, gloo): exercises ``tuna_open.distributed``.

Each process writes what it saw to ``<out>/rank<N>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tuna_open import distributed
from tuna_open.errors import UserError


def main() -> None:
    out = Path(sys.argv[1])
    rank = distributed.rank()
    seen: dict = {"rank": rank, "main": distributed.is_main()}

    def work() -> dict:
        (out / f"ran-on-{rank}").touch()
        return {"from": rank}

    seen["result"] = distributed.on_main(work)
    try:
        distributed.on_main(lambda: (_ for _ in ()).throw(UserError("bad recipe key")))
    except UserError as err:
        seen["user_error"] = str(err)
    try:
        distributed.on_main(lambda: 1 / 0)
    except (ZeroDivisionError, RuntimeError) as err:
        seen["error"] = f"{type(err).__name__}: {err}"
    with distributed.atomic_output_dir(out / "model") as tmp:
        (tmp / f"part-{rank}").write_text(str(rank))
    (out / f"rank{rank}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    main()
