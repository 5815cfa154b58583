"""How much two rankers agree: Kendall τ and top-1 agreement over rankings of the same candidates.

Used to validate a cheap judge against an expensive one (an open vLLM judge against GPT-4, a reward model
against its teacher) before trusting it with a training set. Records are matched by ``id``; records failed in
either file, or present in only one, are counted and left out of the means.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from rankers.aggregate import kendall_tau, top1_agree


def _by_id(records: Iterable[Mapping[str, Any]], label: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for i, rec in enumerate(records):
        if "id" not in rec:
            raise ValueError(f"{label}: record {i} has no 'id'")
        if rec["id"] in out:
            raise ValueError(f"{label}: id {rec['id']!r} appears twice")
        out[rec["id"]] = rec
    return out


def _category(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key, (record.get("metadata") or {}).get(key))
    return None if value is None else str(value)


def _summary(taus: list[float], top1: list[bool]) -> dict[str, Any]:
    return {"count": len(taus), "kendall_tau": sum(taus) / len(taus) if taus else None,
            "top1_agreement": sum(top1) / len(top1) if top1 else None}


def agreement(records_a: Iterable[Mapping[str, Any]], records_b: Iterable[Mapping[str, Any]],
              category_key: str | None = None) -> dict[str, Any]:
    """Mean Kendall τ and top-1 agreement of matched rankings, overall and per ``category_key`` value.

    The category is the record's field ``category_key``, or that key of its ``metadata``, read from record A
    and else record B (``"(none)"`` when neither has it). Raises
    ValueError when two matched orders are not orders of the same number of candidates.
    """
    a, b = _by_id(records_a, "A"), _by_id(records_b, "B")
    common = [i for i in a if i in b]
    failed = [i for i in common if a[i].get("failed") or b[i].get("failed")]
    taus: list[float] = []
    top1: list[bool] = []
    groups: dict[str, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
    failed_ids = set(failed)
    for i in common:
        if i in failed_ids:
            continue
        oa, ob = a[i]["order"], b[i]["order"]
        if len(oa) != len(ob):
            raise ValueError(f"id {i!r}: order of {len(oa)} candidates in A but {len(ob)} in B")
        tau, same = kendall_tau(oa, ob), top1_agree(oa, ob)
        taus.append(tau)
        top1.append(same)
        if category_key is not None:
            category = _category(a[i], category_key) or _category(b[i], category_key) or "(none)"
            groups[category][0].append(tau)
            groups[category][1].append(same)
    out = {**_summary(taus, top1), "failed": len(failed), "only_in_a": len(a) - len(common),
           "only_in_b": len(b) - len(common)}
    if category_key is not None:
        out["by_category"] = {c: _summary(*groups[c]) for c in sorted(groups)}
    return out
