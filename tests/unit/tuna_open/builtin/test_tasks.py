"""The quickstart's world: deterministic splits, no train/held-out leakage, graded verifier."""

from __future__ import annotations

import pytest

from rankers import RankRequest
from tuna_open.builtin import tasks


def test_splits_are_deterministic_and_disjoint() -> None:
    train = tasks.generate("train", 4000, seed=0)
    held = tasks.generate("heldout", 300, seed=0)
    assert tasks.generate("heldout", 300, seed=0) == held
    assert {(r["task"], r["input"]) for r in held}.isdisjoint({(r["task"], r["input"]) for r in train})
    assert {r["task"] for r in held} == {f.name for f in tasks.FAMILIES}
    assert tasks.generate("train", 10, seed=1) != tasks.generate("train", 10, seed=0)


@pytest.mark.parametrize("family", tasks.FAMILIES, ids=lambda f: f.name)
def test_reference_outputs_are_correct(family: tasks.TaskFamily) -> None:
    records = [r for r in tasks.generate("train", 400) if r["task"] == family.name]
    for r in records[:20]:
        nums = [int(x) for x in r["input"].split()] if family.name in {"add", "reverse", "sort", "maximum"} else []
        expected = {
            "add": str(sum(nums)),
            "reverse": " ".join(map(str, nums[::-1])),
            "sort": " ".join(map(str, sorted(nums))),
            "maximum": str(max(nums)) if nums else "",
            "count": str(len(r["input"].split())),
            "upper": r["input"].upper(),
            "repeat": ", ".join([r["input"]] * 3),
            "first_letters": "".join(w[0] for w in r["input"].split()),
        }[family.name]
        assert r["output"] == expected


def test_score_is_graded() -> None:
    assert tasks.score("68", "68") == 1.0
    assert tasks.score(" 68.\nmore text", "68") == 1.0
    assert 0.0 < tasks.score("69", "68") < 0.5
    assert tasks.score("", "68") == 0.0
    assert tasks.score("1 2 4", "1 2 3") > tasks.score("9 9 9", "1 2 3")


def test_score_request_needs_reference() -> None:
    req = RankRequest(prompt="Add the two numbers.", input="2 3", reference="5", candidates=["6", "5", ""])
    assert tasks.score_request(req)[1] == 1.0
    with pytest.raises(ValueError, match="reference"):
        tasks.score_request(RankRequest(prompt="x", candidates=["a"]))
