"""Stage ``rank``: order each prompt's candidates with any ranker backend (Tuna_p likelihood, Tuna_c judge…).

Requests go to the ranker in batches; each judgement is flushed to a resumable partial file as soon as the
ranker hands it over (one by one from the API judges, else at the end of its batch), and by
default every result is also kept in a content-addressed cache under the run directory, so re-runs and
resumed runs never pay for a judgement twice. Failed judgements are kept as ``failed`` records (never an
invented order) and the stage fails if they exceed ``ranker.max_failure_fraction``; running it again asks the
failed ones again (only successes are resumed or cached).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field

from rankers import RankRequest, build_ranker
from rankers.base import Ranking, owned, rank_as_completed, valid_ranking
from rankers.llm.templates import is_multi_turn, transcript
from tuna_open.data.jsonl import ResumableJsonlWriter, read_jsonl
from tuna_open.data.manifest import fingerprint_of
from tuna_open.data.records import RANK_INPUT_FIELDS
from tuna_open.errors import UserError
from tuna_open.recipe import iter_refs
from tuna_open.stages.context import StageContext, StageResult
from tuna_open.stages.rank_viewer import write_rankings_html
from tuna_open.stages.ranked import RankerStage
from tuna_open.stages.stage import Stage


class Config(RankerStage):
    kind: Literal["rank"]
    input: str
    """``@stage`` producing candidates records (a ``sample`` stage)."""
    batch_size: int = Field(default=32, ge=1)


def to_request(rec: dict[str, Any]) -> RankRequest:
    """A candidates record as a ranking job; a multi-turn prompt reaches judges as the conversation's text."""
    messages = rec.get("messages")
    prompt = transcript(messages) if is_multi_turn(messages) else rec["instruction"]
    return RankRequest(prompt=prompt, input=rec.get("input", ""), candidates=rec["candidates"], messages=messages,
                       id=rec["id"], reference=rec.get("output"), logprobs=rec.get("logprobs"),
                       lengths=rec.get("lengths"), metadata={"task": rec["task"]} if "task" in rec else {})


def _cache_dir(ctx: StageContext, flat: dict[str, Any], refs: list[str]) -> str:
    """Default cache under the run dir; keyed by the fingerprints of any models the ranker loads, so a
    retrained model never serves stale cached judgements from the same path."""
    base = flat.get("cache_dir") or str(ctx.run_dir / "cache" / "rankers")
    if not refs:
        return base
    fps = "-".join(fingerprint_of(ctx.outputs[r], r) for r in sorted(refs))
    return f"{base}/{hashlib.sha256(fps.encode()).hexdigest()[:12]}"


def rank_records(records: list[dict[str, Any]], flat: dict[str, Any], output: Path, batch_size: int,
                 max_failure_fraction: float, progress: Callable[..., Any]) -> StageResult:
    """Rank candidates records into ``output`` (resumable, atomic); shared by the stage and ``tuna-open rank``.

    Only good judgements are resumed: a failed one from an earlier try (the judge was down) is asked again
    (``retried``), and a resumed one whose order is not a permutation of its candidates is redone
    (``invalid_resumed``), so re-running the same command after an outage finishes the work.
    """
    backend = flat["backend"]
    sizes = {str(r["id"]): len(r["candidates"]) for r in records}
    dropped: Counter[str] = Counter()

    def resumable(ranking: dict[str, Any]) -> bool:
        if ranking.get("failed"):
            dropped["retried"] += 1
            return False
        n = sizes.get(str(ranking.get("id")))
        if n is None or not valid_ranking(Ranking.from_dict(ranking), n):
            dropped["invalid_resumed"] += 1
            return False
        return True

    with ResumableJsonlWriter(output, keep=resumable) as writer:
        todo = [r for r in records if r["id"] not in writer.done]
        ranker = build_ranker(flat) if todo else None
        with owned(ranker), progress(len(todo), f"ranking ({backend})") as advance:
            for start in range(0, len(todo), batch_size):
                batch = todo[start:start + batch_size]
                for i, ranking in rank_as_completed(ranker, [to_request(r) for r in batch]):
                    writer.write({"id": batch[i]["id"], "ranker": backend, **ranking.to_dict()})
                    advance(1)
        out = writer.records
        failed = sum(1 for r in out if r.get("failed"))
        if out and failed / len(out) > max_failure_fraction:
            raise UserError(f"{failed}/{len(out)} rankings failed, more than max_failure_fraction="
                            f"{max_failure_fraction}; run the same command again to retry them (see {writer.partial})")
        order = {r["id"]: i for i, r in enumerate(records)}
        writer.finalize(sorted(out, key=lambda r: order.get(r["id"], len(order))))
    stats = {"requests": len(out), "failed": failed, "new_requests": len(todo), **dropped,
             **getattr(ranker, "stats", {})}
    ties = tie_counts(out)
    retried = f", {dropped['retried']} retried" if dropped["retried"] else ""
    return StageResult(summary=f"{len(out)} rankings by {backend} ({failed} failed, {len(todo)} new{retried}; "
                               f"{ties['tied_pairs']}/{ties['scored_pairs']} scored pairs tied)",
                       counts={"rankings": len(out), "failed": failed, "retried": dropped["retried"],
                               "invalid_resumed": dropped["invalid_resumed"], **ties},
                       extra={"ranker": stats})


def tie_counts(rankings: list[dict[str, Any]]) -> dict[str, int]:
    """Candidate pairs with scores, how many of them are tied, and rankings whose candidates all tie.

    Tied pairs carry no preference (Tuna masks them by default, DPO and reward pairs skip them), so their share says
    how much of a judge's output is ranking signal at all.
    """
    scored = tied = all_tied = 0
    for r in rankings:
        scores = r.get("scores")
        if r.get("failed") or not scores or len(scores) < 2:
            continue
        pairs = [(a, b) for i, a in enumerate(scores) for b in scores[i + 1:]]
        scored += len(pairs)
        tied += sum(a == b for a, b in pairs)
        all_tied += len(set(scores)) == 1
    return {"scored_pairs": scored, "tied_pairs": tied, "all_tied_rankings": all_tied}


def run(ctx: StageContext, cfg: Config) -> StageResult:
    choice = cfg.choice(ctx.recipe)
    flat = choice.flat()
    flat["cache_dir"] = _cache_dir(ctx, flat, sorted(set(iter_refs(flat))))
    records = ctx.records(cfg.input, RANK_INPUT_FIELDS)
    try:
        result = rank_records(records, ctx.resolve(flat), ctx.output, cfg.batch_size,
                              choice.max_failure_fraction, ctx.progress)
    except UserError as err:
        raise UserError(f"stage {cfg.name}: {err}") from None
    viewer = write_rankings_html(records, read_jsonl(ctx.output), ctx.stage_dir / "rankings.html",
                                 title=f"{ctx.recipe.name}: rankings of stage {cfg.name} ({flat['backend']})")
    result.extra["viewer"] = viewer.relative_to(ctx.run_dir).as_posix()
    return result


STAGE = Stage(kind="rank", config=Config, output="records", run=run)
