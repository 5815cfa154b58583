"""benchmarks/roofline.py: the roof every benchmark JSON carries, and a path's fraction of it."""

from __future__ import annotations

import sys

from helpers.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import roofline  # noqa: E402


def test_the_roof_is_both_gemm_rates_measured_now():
    roof = roofline.measure(size=64)
    assert roof["gemm_size"] == 64 and roof["device"] == "cpu"
    assert roof["gemm_gflops_fp32"] > 0 and roof["gemm_gflops_bf16"] > 0


def test_a_paths_fraction_is_against_the_faster_gemm_rate():
    roof = {"gemm_gflops_fp32": 40.0, "gemm_gflops_bf16": 160.0}
    # 1M parameters x 2 FLOPs x 4,000 tokens/s = 8 GFLOP/s = 5% of the bf16 rate (the faster one)
    assert roofline.fraction(1_000_000, 4_000, roof, roofline.FORWARD_FLOPS_PER_PARAM) == {
        "model_gflops_per_s": 8.0, "fraction_of_roof": 0.05}
    slow_bf16 = {"gemm_gflops_fp32": 40.0, "gemm_gflops_bf16": 1.0}
    assert roofline.fraction(1_000_000, 1_000, slow_bf16, roofline.TRAIN_FLOPS_PER_PARAM)["fraction_of_roof"] == 0.15


def test_parameters_are_counted_without_reading_weights(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=2, tie_word_embeddings=False).save_pretrained(tmp_path)
    # embeddings 1600 + attention 4 x 256 + MLP 3 x 512 + 2 norms x 16 + final norm 16 + head 1600
    assert roofline.parameter_count(str(tmp_path)) == 1600 + 1024 + 1536 + 32 + 16 + 1600
