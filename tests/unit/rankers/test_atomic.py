"""``rankers.atomic``: whole-file writes that readers never see torn, with the permissions ``open()`` gives."""

from __future__ import annotations

import os
from pathlib import Path

from rankers.atomic import atomic_write_text


def test_atomic_writes_follow_the_umask_not_mkstemps_0600(tmp_path: Path) -> None:
    """#20: every artifact, manifest and cache entry came out 0600 under a 022 umask (this process's)."""
    (tmp_path / "plain").write_text("x")
    atomic_write_text(tmp_path / "atomic", "x")
    mode = (tmp_path / "plain").stat().st_mode & 0o777
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == mode
    assert mode == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
