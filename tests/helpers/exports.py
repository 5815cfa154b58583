"""``tuna-open export`` through the CLI, as a user runs it (the export tests' shared step)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tuna_open.cli import main


def export(run: Path, out: Path, fmt: str, *extra: str) -> str:
    result = CliRunner().invoke(main, ["export", str(run), "rankings", "--format", fmt, "--output", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result.output
