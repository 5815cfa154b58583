"""Stage ``distill``: instruction data whose outputs are a model's samples ("distil a dataset from a teacher").

This is how Alpaca was made (one text-davinci-003 sample per instruction), so it is how to build the paper's
information structure in any world: SFT learns from one sample of a teacher, while Tuna's judge may know more than
that sample. Composition keeps it small: a ``sample`` stage draws the responses (resumable, cached, any sampler),
and this stage turns each prompt's chosen response into the ``output`` of an instruction record. The chosen response
is the first sample, or with ``rankings`` the best-ranked one (rejection-sampling distillation). The original
output, if any, is kept as ``reference_output`` so reports can say how good the distilled labels are.
"""

from __future__ import annotations

from typing import Any, Literal

from tuna_open.data.jsonl import write_jsonl
from tuna_open.data.records import CANDIDATES_FIELDS
from tuna_open.errors import UserError
from tuna_open.recipe import StageConfig
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.stage import Stage
from tuna_open.train.preferences import join_rankings

INSTRUCTION_KEYS = ("id", "task", "instruction", "input", "messages")


class Config(StageConfig):
    kind: Literal["distill"]
    input: str
    """``@stage`` of a ``sample`` stage (typically ``n: 1`` from the teacher)."""
    rankings: str | None = None
    """``@stage`` of a ``rank`` stage over ``input``: take each prompt's best-ranked sample instead of the first;
    prompts whose ranking failed are dropped (never a guessed label)."""


def run(ctx: StageContext, cfg: Config) -> StageResult:
    samples = ctx.records(cfg.input, CANDIDATES_FIELDS)
    best: dict[str, int] | None = None
    if cfg.rankings is not None:
        best = {rec["id"]: r["order"][0]
                for rec, r in join_rankings(samples, ctx.records(cfg.rankings))}
    out: list[dict[str, Any]] = []
    for rec in samples:
        if not rec.get("candidates"):
            raise UserError(f"stage {cfg.name}: {cfg.input} record {rec.get('id')!r} has no candidates")
        if best is not None and rec["id"] not in best:
            continue
        row = {k: rec[k] for k in INSTRUCTION_KEYS if k in rec}
        row["output"] = rec["candidates"][best[rec["id"]] if best is not None else 0]
        if "output" in rec:
            row["reference_output"] = rec["output"]
        out.append(row)
    write_jsonl(ctx.output, out)
    same = sum(r["output"].strip() == r["reference_output"].strip() for r in out if "reference_output" in r)
    with_ref = sum("reference_output" in r for r in out)
    agree = f", {same}/{with_ref} equal to the original output" if with_ref else ""
    return StageResult(summary=f"{len(out)} distilled instructions{agree}",
                       counts={"instructions": len(out), "dropped": len(samples) - len(out),
                               "equal_to_reference": same})


STAGE = Stage(kind="distill", config=Config, output="records", run=run)
