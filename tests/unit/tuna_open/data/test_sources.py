"""Data sources: every published format (written here, small) loads to the same records; a wrong schema is one
``validate`` line naming the file, the row and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tuna_open.cli import main
from tuna_open.data.schema import DataSource
from tuna_open.data.sources import content_id, load_instructions
from tuna_open.errors import UserError


def unnamed(position: int, record: dict) -> dict:
    """A record its source gives no id: the loader names it by its position and content."""
    return {**record, "id": content_id(record, position)}  # type: ignore[arg-type]


SYSTEM = {"role": "system", "content": "Be brief."}
CHAT = [  # TRL conversational: a multi-turn record and a single-turn one
    {"messages": [SYSTEM, {"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"},
                  {"role": "user", "content": "Now double it."}, {"role": "assistant", "content": "10"}]},
    {"id": "q2", "messages": [{"role": "user", "content": "Reverse 1 2 3."},
                              {"role": "assistant", "content": "3 2 1"}]},
]
CONTEXT = [SYSTEM, {"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"},
           {"role": "user", "content": "Now double it."}]
EXPECTED_CHAT = [
    unnamed(0, {"instruction": "Now double it.", "input": "", "messages": CONTEXT, "output": "10"}),
    {"id": "q2", "instruction": "Reverse 1 2 3.", "input": "", "output": "3 2 1",
     "messages": [{"role": "user", "content": "Reverse 1 2 3."}]},
]
ALPACA = [{"instruction": "Add the numbers.", "input": "2 3", "output": "5"},
          {"instruction": "Say hi.", "input": "", "output": "hi", "task": "greet"}]
EXPECTED_ALPACA = [unnamed(0, {"instruction": "Add the numbers.", "input": "2 3", "output": "5"}),
                   unnamed(1, {"instruction": "Say hi.", "input": "", "output": "hi", "task": "greet"})]


def load(path: Path, **src: object) -> list[dict]:
    return load_instructions(DataSource(**{"source": str(path), **src}), path.parent)  # type: ignore[arg-type]


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_alpaca_json_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(ALPACA))
    assert load(tmp_path / "a.json") == EXPECTED_ALPACA
    assert load(jsonl(tmp_path / "a.jsonl", ALPACA)) == EXPECTED_ALPACA


def test_trl_messages_multi_turn_last_assistant_turn_is_the_response(tmp_path: Path) -> None:
    assert load(jsonl(tmp_path / "chat.jsonl", CHAT)) == EXPECTED_CHAT
    # A conversation ending with a user turn is a prompt without a reference.
    rows = [{"messages": CONTEXT}]
    assert load(jsonl(tmp_path / "open.jsonl", rows)) == [
        unnamed(0, {"instruction": "Now double it.", "input": "", "messages": CONTEXT})]


def test_sharegpt_with_system_field(tmp_path: Path) -> None:
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    rows = [{"system": "Be brief.", "conversations": [{"from": names[m["role"]], "value": m["content"]}
                                                      for m in CHAT[0]["messages"][1:]]},
            {"id": "q2", "conversations": [{"from": "human", "value": "Reverse 1 2 3."},
                                           {"from": "gpt", "value": "3 2 1"}]}]
    (tmp_path / "sg.json").write_text(json.dumps(rows))
    assert load(tmp_path / "sg.json") == EXPECTED_CHAT


def test_trl_prompt_completion_standard_and_conversational(tmp_path: Path) -> None:
    rows = [{"prompt": "Add 2 and 3.", "completion": "5"}]
    assert load(jsonl(tmp_path / "pc.jsonl", rows)) == [
        unnamed(0, {"instruction": "Add 2 and 3.", "input": "", "output": "5"})]
    conv = [{"prompt": CONTEXT, "completion": [{"role": "assistant", "content": "10"}]}]
    assert load(jsonl(tmp_path / "pcc.jsonl", conv)) == EXPECTED_CHAT[:1]


def test_csv_alpaca_and_csv_messages_column(tmp_path: Path) -> None:
    import pandas as pd

    pd.DataFrame(ALPACA).to_csv(tmp_path / "a.csv", index=False)
    assert load(tmp_path / "a.csv") == EXPECTED_ALPACA
    pd.DataFrame([{"id": r.get("id"), "messages": json.dumps(r["messages"])} for r in CHAT]
                 ).to_csv(tmp_path / "chat.csv", index=False)
    assert load(tmp_path / "chat.csv") == EXPECTED_CHAT


def test_parquet_messages(tmp_path: Path) -> None:
    import pandas as pd

    pd.DataFrame(CHAT).to_parquet(tmp_path / "chat.parquet")
    assert load(tmp_path / "chat.parquet") == EXPECTED_CHAT
    assert load(tmp_path / "chat.parquet", offset=1, limit=1) == EXPECTED_CHAT[1:]


def test_hf_dataset_with_config_split_and_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local dataset repository with two configs (README ``configs``), loaded through ``hf:``."""
    repo = tmp_path / "repo"
    (repo / "chat").mkdir(parents=True)
    (repo / "alpaca").mkdir()
    jsonl(repo / "chat" / "test.jsonl", CHAT)
    jsonl(repo / "chat" / "train.jsonl", CHAT[1:])
    jsonl(repo / "alpaca" / "train.jsonl", ALPACA)
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: chat\n  data_files:\n  - split: train\n    path: chat/train.jsonl\n"
        "  - split: test\n    path: chat/test.jsonl\n- config_name: alpaca\n  data_files:\n"
        "  - split: train\n    path: alpaca/train.jsonl\n---\n")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf = f"hf:{repo}"
    assert load(tmp_path / "x", source=hf, config="chat", split="test") == EXPECTED_CHAT
    assert load(tmp_path / "x", source=hf, config="alpaca") == EXPECTED_ALPACA
    # A local folder has no revisions, so the pass-through is checked on the call itself.
    import datasets

    calls: list[tuple] = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **kw: calls.append((a, kw)) or real(*a, **kw))
    assert load(tmp_path / "x", source=hf, config="chat", revision="v1.0") == EXPECTED_CHAT[1:]
    assert calls == [((str(repo), "chat"), {"split": "train", "revision": "v1.0"})]
    with pytest.raises(UserError, match=r"hf:.*repo \(config nope, split train\): cannot load dataset"):
        load(tmp_path / "x", source=hf, config="nope")


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "chat.jsonl", CHAT)
    with pytest.raises(UserError, match=r"chat.jsonl:1: field 'instruction' is missing \(a conversation"):
        load(path, format="alpaca")
    assert load(path, format="messages") == EXPECTED_CHAT


def write_recipe(tmp_path: Path, data_file: Path, **src: object) -> Path:
    recipe = {"name": "t", "data": {"train": {"source": data_file.name, **src}},
              "stages": [{"name": "init", "kind": "init_model"},
                         {"name": "sft", "kind": "sft", "model": "@init", "data": "train", "template": "chat"}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize(("rows", "message"), [
    ([CHAT[0], {"messages": [{"role": "user", "content": 3}]}], "bad.jsonl:2: field 'messages[0]': expected"),
    ([CHAT[0], CHAT[1], {"messages": [{"role": "bot", "content": "x"}]}],
     "bad.jsonl:3: field 'messages[0].role': unknown role 'bot'"),
    ([{"messages": [{"role": "assistant", "content": "hi"}]}],
     "bad.jsonl:1: field 'messages': the turn before the response must be a user turn"),
    ([{"text": "hello"}], "bad.jsonl:1: unknown record schema (keys: text)"),
    ([CHAT[0], ALPACA[0]], "bad.jsonl:2: field 'messages' is missing"),
    ([{"messages": []}], "bad.jsonl:1: field 'messages': expected a non-empty list of messages"),
])
def test_validate_fails_on_a_wrong_schema_with_one_line(tmp_path: Path, rows: list, message: str) -> None:
    path = write_recipe(tmp_path, jsonl(tmp_path / "bad.jsonl", rows))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "data.train" in lines[0], result.output
    assert message in lines[0]


def test_validate_accepts_a_conversational_file_and_names_csv_lines(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(write_recipe(tmp_path, jsonl(tmp_path / "c.jsonl", CHAT)))])
    assert result.exit_code == 0, result.output
    # CSV line numbers count the header and multi-line quoted fields.
    (tmp_path / "a.csv").write_text('instruction,input,output\n"two\nlines",,x\n,,y\n')
    result = CliRunner().invoke(main, ["validate", str(write_recipe(tmp_path, tmp_path / "a.csv"))])
    assert result.exit_code == 2 and "a.csv:4: field 'instruction' is missing" in result.output, result.output


def test_broken_json_lines_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "b.jsonl").write_text(json.dumps(ALPACA[0]) + "\n\n{oops\n")
    with pytest.raises(UserError, match=r"b.jsonl:3: invalid JSON"):
        load(tmp_path / "b.jsonl")


def test_a_csv_bom_is_the_encodings_and_an_invisible_header_character_is_named(tmp_path: Path) -> None:
    """#20: Excel's BOM made the first column '\\ufeffinstruction' ("field 'instruction' is missing")."""
    (tmp_path / "bom.csv").write_text("\ufeffinstruction,output\nadd,5\n", encoding="utf-8")
    assert [r["instruction"] for r in load(tmp_path / "bom.csv")] == ["add"]
    (tmp_path / "zw.csv").write_text("instruction\u200b,output\nadd,5\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"zw.csv:1: header .* invisible character \(U\+200B ZERO WIDTH SPACE\)"):
        load(tmp_path / "zw.csv")


def test_a_csv_row_with_more_cells_than_the_header_names_its_line(tmp_path: Path) -> None:
    """#20: the extra cells (an unquoted comma) were silently dropped."""
    (tmp_path / "a.csv").write_text("instruction,output\nadd,5\nsay hi, politely,hello\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"a.csv:3: 3 cells, but the header has 2 columns"):
        load(tmp_path / "a.csv")


def test_an_hf_sampler_batch_size_must_be_positive(tmp_path: Path) -> None:
    """#20: batch_size 0 validated, then the sampler looped over range(0, n, 0) (a ValueError traceback)."""
    from tuna_open.generate import SamplerChoice

    with pytest.raises(ValueError, match="batch_size"):
        SamplerChoice.model_validate({"backend": "hf", "hf": {"batch_size": 0}})


def test_a_csv_column_named_twice_or_an_unterminated_quote_is_named(tmp_path: Path) -> None:
    """#20 probe: the second 'instruction' column silently won; an open quote swallowed the rest of the file."""
    (tmp_path / "twice.csv").write_text("instruction,instruction\na,b\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"twice.csv:1: column 'instruction' appears twice"):
        load(tmp_path / "twice.csv")
    (tmp_path / "quote.csv").write_text('instruction,output\nadd,5\n"say hi,hello\nbye,x\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"quote.csv:3: invalid CSV"):
        load(tmp_path / "quote.csv")
