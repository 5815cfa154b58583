"""The real shipped weights: fetched, converted from scratch once, loaded, answering and training through stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuna_open.models import SHIPPED


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_converts_once_and_loads(name: str) -> None:
    """Fetch (if needed), assemble, convert: a plain fp32 checkpoint with a bounded context, reused after."""
    from transformers import AutoConfig, AutoTokenizer

    from tuna_open.models import resolve_model

    path = Path(resolve_model(name))
    done = json.loads((path / "conversion.json").read_text())
    assert done["sha256"] == SHIPPED[name].sha256
    assert resolve_model(name) == str(path)
    config = AutoConfig.from_pretrained(path)
    assert getattr(config, "quantization_config", None) is None
    assert AutoTokenizer.from_pretrained(path).model_max_length == config.max_position_embeddings


def test_real_smollm2_answers_and_trains_through_stages(tmp_path: Path) -> None:
    """`tuna-open eval` on the real SmolLM2 (it knows capitals), then a LoRA Tuna stage on its own samples."""
    from click.testing import CliRunner

    from tuna_open.cli import main

    data = tmp_path / "facts.jsonl"
    facts = [("What is the capital of France?", "Paris"), ("What is the capital of Japan?", "Tokyo"),
             ("What is the capital of Italy?", "Rome"), ("What color is the sky on a clear day?", "Blue")]
    data.write_text("".join(json.dumps({"id": str(i), "instruction": q, "input": "", "output": a}) + "\n"
                            for i, (q, a) in enumerate(facts)))
    result = CliRunner().invoke(main, ["eval", "--model", "smol=smollm2-135m-instruct", "--data", str(data),
                                       "--verifier", "tuna_open.eval.instructions:contains_answer",
                                       "--max-new-tokens", "16",
                                       "--run-dir", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["models"]["smol"]["accuracy"] >= 50.0
