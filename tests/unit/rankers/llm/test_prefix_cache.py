"""The batching and padding the prefix-once scorers build on (their equality with the per-candidate paths is tested
with the scorers: ``logprob/test_hf_scorer.py``, ``backends/test_reward_model.py``)."""

from __future__ import annotations

from rankers.llm.hf import left_pad, right_pad
from rankers.llm.prefix_cache import pack


def test_a_request_never_straddles_two_forwards() -> None:
    assert pack([3, 4, 1, 2, 9, 1], budget=5) == [[0], [1, 2], [3], [4], [5]]
    assert pack([1, 1, 1], budget=8) == [[0, 1, 2]] and pack([], budget=8) == []


def test_left_padding_puts_every_last_token_in_the_last_column() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = right_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
