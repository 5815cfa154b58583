"""benchmarks/sampling.py's drift figures: a sampler's log-probs against fp32 teacher forcing of its samples."""

from __future__ import annotations

import sys

import pytest
from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import sampling  # noqa: E402


def test_only_samples_scored_over_the_same_tokens_enter_the_log_prob_differences():
    # prompt 0: the second sample was cut at max_new_tokens (4 tokens reported, teacher forcing appends EOS: 5)
    test = [[(-2.0, 3), (-4.0, 4)], [(-1.0, 2), (-3.0, 2)]]
    fp32 = [[(-2.5, 3), (-9.0, 5)], [(-1.0, 2), (-2.0, 2)]]
    out = sampling.compare_scores(test, fp32)
    assert out["samples"] == 4 and out["comparable"] == 3 and out["tokens"] == 7
    assert out["logprob_abs_diff_mean"] == pytest.approx((0.5 + 0 + 1.0) / 3, abs=1e-4)
    assert out["logprob_abs_diff_max"] == 1.0
    assert out["kl_per_token"] == pytest.approx((0.5 + 0 - 1.0) / 7, abs=1e-5)
    # rankings use every sample, each over its own token count: prompt 0 is ordered alike (-0.67 > -1.0 under test,
    # -0.83 > -1.8 under fp32), and so is prompt 1 (-0.5 > -1.5, -0.5 > -1.0)
    assert out["same_ranking"] == 1.0 and out["same_top1"] == 1.0


def test_a_flipped_best_is_counted():
    out = sampling.compare_scores([[(-1.0, 2), (-3.0, 2)]], [[(-3.0, 2), (-1.0, 2)]])
    assert out["same_ranking"] == 0.0 and out["same_top1"] == 0.0 and out["comparable"] == 2


def test_nothing_comparable_leaves_the_differences_out_not_zero():
    out = sampling.compare_scores([[(-1.0, 4)]], [[(-1.5, 5)]])
    assert out["comparable"] == 0 and "logprob_abs_diff_mean" not in out and "kl_per_token" not in out


def test_samples_cut_at_the_token_limit_stay_out_of_the_log_prob_figures_but_not_the_rankings():
    # the second sample was cut (no EOS): its counts happen to match, its log-probs are still another quantity
    test = [[(-1.0, 2), (-2.0, 4)]]
    fp32 = [[(-1.1, 2), (-20.0, 4)]]
    out = sampling.compare_scores(test, fp32, usable=[[True, False]])
    assert out["comparable"] == 1 and out["logprob_abs_diff_max"] == pytest.approx(0.1)
    assert out["same_ranking"] == 1.0  # test: -0.5 and -0.5, the tie by index; fp32: -0.55 > -5.0
