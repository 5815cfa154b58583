"""The CLI as a user runs it, and the shape every user mistake must take: one ``error:`` line, exit 2."""

from __future__ import annotations

from click.testing import CliRunner

from tuna_open.cli import main


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def one_error(code: int, out: str, *words: str) -> None:
    """Exit 2, one ``error:`` line (the last) naming ``words``, no traceback."""
    assert code == 2, out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in out, out
    assert sum(line.startswith("error") for line in lines) == 1, out
    for word in words:
        assert word in out, out
