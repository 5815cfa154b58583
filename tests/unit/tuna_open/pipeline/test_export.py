"""``tuna-open export``: rankings → a Hugging Face dataset that ``load_dataset`` reads and TRL trains on."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner
from helpers.exports import export

from tuna_open.cli import main
from tuna_open.data.jsonl import read_jsonl
from tuna_open.pipeline.export import export_rows
from tuna_open.train.preferences import preference_pairs

CANDIDATES = [{"id": "a", "prompt": "P-a", "candidates": ["x", "y", "z"]},
              {"id": "b", "prompt": "P-b", "candidates": ["u", "v"]}]
RANKINGS = [{"id": "a", "order": [2, 0, 1], "scores": [0.5, 0.1, 0.9]},
            {"id": "b", "order": [], "failed": True, "error": "unparseable"}]


def test_rows_of_each_format_best_first_and_failures_left_out() -> None:
    assert export_rows("dpo", CANDIDATES, RANKINGS, "j") == [
        {"prompt": "P-a", "chosen": "z", "rejected": "x"}, {"prompt": "P-a", "chosen": "z", "rejected": "y"}]
    assert len(export_rows("dpo", CANDIDATES, RANKINGS, "j", pairs="all_pairs")) == 3
    assert export_rows("listwise", CANDIDATES, RANKINGS, "function:m:f") == [
        {"prompt": "P-a", "completions": ["z", "x", "y"], "scores": [0.9, 0.5, 0.1], "judge": "function:m:f"}]
    assert export_rows("sft", CANDIDATES, RANKINGS, "j") == [{"prompt": "P-a", "completion": "z"}]


def test_export_is_loadable_and_carries_a_card(ranked_run: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    rankings = read_jsonl(ranked_run / "stages/rankings/records.jsonl")
    candidates = read_jsonl(ranked_run / "stages/samples/records.jsonl")
    line = export(ranked_run, tmp_path / "dpo", "dpo", "--pairs", "all_pairs")
    dpo = load_dataset(str(tmp_path / "dpo"), split="train")
    assert dpo.column_names == ["prompt", "chosen", "rejected"]
    pairs = preference_pairs(candidates, rankings, mode="all_pairs")
    assert len(dpo) == len(pairs) > 0 and f"{len(pairs)} dpo rows from {len(rankings)} rankings" in line
    assert dpo[0] == {k: pairs[0][k] for k in ("prompt", "chosen", "rejected")}
    card = (tmp_path / "dpo/README.md").read_text()
    assert "teacher_logprob" in card and "`rankings`" in card and f"Rows: {len(pairs)}" in card
    assert "all_pairs" in card and "run `run`" in card

    export(ranked_run, tmp_path / "lw", "listwise")
    listwise = load_dataset(str(tmp_path / "lw"), split="train")
    assert len(listwise) == len(rankings)
    first, ranking = listwise[0], rankings[0]
    texts = candidates[0]["candidates"]
    assert first["completions"] == [texts[i] for i in ranking["order"]]
    assert first["scores"] == sorted(first["scores"], reverse=True) and first["judge"] == "teacher_logprob"

    export(ranked_run, tmp_path / "sft", "sft")
    assert load_dataset(str(tmp_path / "sft"), split="train")[0]["completion"] == texts[ranking["order"][0]]


def test_same_named_exports_never_load_each_others_rows(ranked_run: Path, tmp_path: Path) -> None:
    """datasets caches local directories by base name and data-file names; ours carry a content hash."""
    from datasets import load_dataset

    export(ranked_run, tmp_path / "a" / "prefs", "dpo", "--pairs", "best_vs_worst")
    export(ranked_run, tmp_path / "b" / "prefs", "dpo", "--pairs", "all_pairs")
    few, many = (load_dataset(str(tmp_path / d / "prefs"), split="train") for d in ("a", "b"))
    rankings = read_jsonl(ranked_run / "stages/rankings/records.jsonl")
    assert len(few) <= len(rankings) < len(many)
    export(ranked_run, tmp_path / "a" / "prefs", "dpo", "--pairs", "all_pairs")  # re-exported in place
    assert len(load_dataset(str(tmp_path / "a" / "prefs"), split="train")) == len(many)


def test_export_mistakes_are_one_line(ranked_run: Path, tmp_path: Path) -> None:
    for stage, message in (("nope", "no finished stage 'nope'"), ("samples", "is a sample stage")):
        result = CliRunner().invoke(main, ["export", str(ranked_run), stage, "--format", "dpo",
                                           "--output", str(tmp_path / "x")])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


class FakeHfApi:
    """Records the Hub calls (no network): the upload is tested up to the huggingface_hub call."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def create_repo(self, repo_id: str, **kw: object) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def create_commit(self, **kw: object) -> object:
        files = {op.path_in_repo: op.path_or_fileobj for op in kw.pop("operations")}  # type: ignore[attr-defined]
        self.calls.append(("create_commit", {**kw, "files": files}))
        return type("Commit", (), {"commit_url": "https://hub/commit/1"})()


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    import huggingface_hub

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    return FakeHfApi.calls


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(ranked_run: Path, tmp_path: Path,
                                                            hub: list[tuple[str, dict]]) -> None:
    output = export(ranked_run, tmp_path / "d", "dpo", "--push-to-hub", "me/tuna-prefs")
    assert "pushed: https://hub/commit/1" in output
    assert hub[0] == ("create_repo", {"repo_id": "me/tuna-prefs", "repo_type": "dataset", "private": False,
                                      "exist_ok": True})
    files = hub[1][1]["files"]
    assert hub[1][1]["repo_type"] == "dataset" and files["README.md"] == str(tmp_path / "d/README.md")
    assert not any(name.startswith(".") for name in files)  # the export marker stays home


def test_push_a_model_stage_writes_a_model_card(ranked_run: Path, hub: list[tuple[str, dict]]) -> None:
    result = CliRunner().invoke(main, ["push", str(ranked_run), "init", "me/tiny", "--private"])
    assert result.exit_code == 0, result.output
    assert hub[0][1] == {"repo_id": "me/tiny", "repo_type": "model", "private": True, "exist_ok": True}
    files = hub[1][1]["files"]
    assert files["config.json"] == str(ranked_run / "stages/init/model/config.json")
    card = files["README.md"].decode()
    assert not (ranked_run / "stages/init/model/README.md").exists()  # the cached model stays as trained
    assert card.startswith("---\n") and "# init" in card and "`init_model`" in card and "run `run`" in card
    assert "student Llama" in card  # the stage's result line
    result = CliRunner().invoke(main, ["push", str(ranked_run), "rankings", "me/x"])
    assert result.exit_code == 2 and "push uploads a model stage's model" in result.output and len(hub) == 2


def test_a_failed_push_leaves_the_model_as_trained(ranked_run: Path, hub: list[tuple[str, dict]],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The card was written into the model dir first: a failed upload left it there and the next run retrained."""
    def refused(self: FakeHfApi, *args: object, **kw: object) -> object:
        raise OSError("connection reset")

    monkeypatch.setattr(FakeHfApi, "create_repo", refused)
    before = sorted(p.name for p in (ranked_run / "stages/init/model").iterdir())
    with pytest.raises(OSError):
        CliRunner().invoke(main, ["push", str(ranked_run), "init", "me/tiny"], catch_exceptions=False)
    assert sorted(p.name for p in (ranked_run / "stages/init/model").iterdir()) == before


def test_push_without_a_token_is_one_line_before_the_hub(ranked_run: Path, hub: list[tuple[str, dict]],
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    result = CliRunner().invoke(main, ["push", str(ranked_run), "init", "me/tiny"])
    assert result.exit_code == 2 and result.output.startswith("error: no Hugging Face token"), result.output
    assert hub == []
