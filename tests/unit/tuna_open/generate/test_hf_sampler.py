"""The ``prefill_once`` decode loop draws exactly what transformers' ``generate`` drew (the published runs' caches
depend on it), prefills each prompt once, falls back to ``generate`` on a cache it cannot repeat, and adding the
``decode`` key changes no stage's fingerprint."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from helpers.fingerprints import stage_fingerprints
from helpers.paths import ROOT
from helpers.tiny_models import TEXTS

from tuna_open.generate.base import SamplingParams
from tuna_open.generate.hf_sampler import HFSampler, HFSamplerConfig

PROMPTS = [text[:size] for text, size in zip(TEXTS, (5, 60, 12, 100, 3, 33, 71))]
"""Ragged lengths (left padding in every batch); 7 prompts in batches of 3 (3, 3, 1)."""


@pytest.fixture(scope="module")
def sampler(tiny_model_dir: Path) -> HFSampler:
    """The tiny model with EOS made likely (logit about 4 on the mean final hidden state), so rows finish at
    different steps: finished rows, pad replacement and early stops are all exercised."""
    sampler = HFSampler(str(tiny_model_dir), HFSamplerConfig(batch_size=3))
    enc = sampler.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = sampler.model(**enc, output_hidden_states=True).hidden_states[-1][enc["attention_mask"].bool()]
        mean = hidden.mean(0)
        sampler.model.lm_head.weight[sampler.tokenizer.eos_token_id] = mean * (4.0 / mean.dot(mean))
    return sampler


def decode_both(sampler: HFSampler, params: SamplingParams, seed: int):
    """(prefill_once, generate) outputs of one seeded ragged batch: (tokens, sums) each."""
    tok = sampler.tokenizer
    tok.padding_side = "left"
    enc = tok(PROMPTS[:5], return_tensors="pt", padding=True)
    out = []
    for decode in ("prefill_once", "generate"):
        sampler.decode = decode
        torch.manual_seed(seed)
        with torch.no_grad():
            out.append(sampler._decode(enc["input_ids"], enc["attention_mask"], params))
    sampler.decode = "prefill_once"
    return out


CASES = [(1.0, 1.0, 4), (0.7, 1.0, 4), (1.0, 0.9, 4), (0.7, 0.9, 1), (1.0, 1.0, 1), (0.0, 1.0, 1)]
"""(temperature, top_p, n); temperature 0 is greedy (``generate`` refuses greedy with n > 1)."""


@pytest.mark.parametrize("seed", [0, 1, 5])
@pytest.mark.parametrize(("temperature", "top_p", "n"), CASES)
def test_prefill_once_draws_the_tokens_and_logprobs_of_generate(sampler: HFSampler, seed: int,
                                                                temperature: float, top_p: float, n: int) -> None:
    params = SamplingParams(n=n, max_new_tokens=12, temperature=temperature, top_p=top_p, seed=seed, logprobs=True)
    (tokens, sums), (ref_tokens, ref_sums) = decode_both(sampler, params, seed)
    assert torch.equal(tokens, ref_tokens)
    assert torch.allclose(sums, ref_sums, rtol=0, atol=1e-4)

    sampler.decode = "generate"
    reference = sampler.generate(PROMPTS, params)
    sampler.decode = "prefill_once"
    samples = sampler.generate(PROMPTS, params)
    assert [[(s.text, s.num_tokens) for s in row] for row in samples] == [
        [(s.text, s.num_tokens) for s in row] for row in reference]
    for row, ref_row in zip(samples, reference):
        for sample, ref in zip(row, ref_row):
            assert sample.logprob == pytest.approx(ref.logprob, abs=1e-4)


def test_the_tests_rows_finish_at_different_steps(sampler: HFSampler) -> None:
    """Guards the fixture: with no EOS drawn, pad replacement and early stops would go untested."""
    lengths = [s.num_tokens for row in sampler.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=12))
               for s in row]
    assert min(lengths) < 12 and max(lengths) == 12  # type: ignore[type-var]


def test_without_logprobs_the_samples_are_the_same_and_carry_none(sampler: HFSampler) -> None:
    params = SamplingParams(n=4, max_new_tokens=12, temperature=0.7, seed=3)
    with_lp = sampler.generate(PROMPTS, params.model_copy(update={"logprobs": True}))
    without = sampler.generate(PROMPTS, params)
    assert [[s.text for s in row] for row in without] == [[s.text for s in row] for row in with_lp]
    assert all(s.logprob is None for row in without for s in row)


def test_each_prompt_is_prefilled_once_then_decoded_as_n_rows(sampler: HFSampler,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []
    forward = sampler.model.forward
    monkeypatch.setattr(sampler.model, "forward",
                        lambda *a, **kw: shapes.append(tuple(kw["input_ids"].shape)) or forward(*a, **kw))
    sampler.generate(PROMPTS[:3], SamplingParams(n=4, max_new_tokens=6, logprobs=True))
    assert shapes[0][0] == 3 and shapes[0][1] > 1
    assert set(shapes[1:]) == {(12, 1)}


def test_truncated_prompts_are_counted_and_sampled_alike(sampler: HFSampler, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler.model.config, "max_position_embeddings", 24)  # 16 prompt tokens at most
    params = SamplingParams(n=2, max_new_tokens=8, seed=2, logprobs=True)
    before = sampler.truncated
    samples = sampler.generate(PROMPTS, params)
    assert sampler.truncated - before > 0
    sampler.decode = "generate"
    reference = sampler.generate(PROMPTS, params)
    sampler.decode = "prefill_once"
    assert [[(s.text, s.num_tokens) for s in row] for row in samples] == [
        [(s.text, s.num_tokens) for s in row] for row in reference]


def test_a_cache_that_cannot_be_repeated_falls_back_to_generate_once_logged(
        tiny_model_dir: Path, sampler: HFSampler, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from transformers import DynamicCache

    params = SamplingParams(n=4, max_new_tokens=8, seed=4, logprobs=True)
    expected = sampler.generate(PROMPTS, params)
    owner = next(c for c in DynamicCache.__mro__ if "batch_repeat_interleave" in vars(c))
    monkeypatch.delattr(owner, "batch_repeat_interleave")
    fresh = HFSampler(str(tiny_model_dir), HFSamplerConfig(batch_size=3))
    fresh.model.load_state_dict(sampler.model.state_dict())
    with caplog.at_level(logging.WARNING, logger="tuna_open.generate.hf_sampler"):
        samples = fresh.generate(PROMPTS, params)
    assert fresh.decode == "generate"
    assert [r.getMessage() for r in caplog.records] == [
        "sampling with transformers generate (decode: generate): LlamaForCausalLM returned DynamicCache as its cache"]
    assert [[s.text for s in row] for row in samples] == [[s.text for s in row] for row in expected]


def test_decode_at_its_default_leaves_the_dump_and_so_every_stage_fingerprint() -> None:
    """Stages cached before ``decode`` existed stay cached; the reference loop, chosen, is a different config."""
    assert HFSamplerConfig().model_dump() == {"batch_size": 32, "dtype": "auto", "device": "auto"}  # as before
    assert HFSamplerConfig(decode="generate").model_dump()["decode"] == "generate"
    recipe = ROOT / "recipes" / "quickstart.yaml"
    plain = stage_fingerprints(recipe, 0)
    explicit = stage_fingerprints(recipe, 0, ["stages.teacher_samples.sampler.hf.decode=prefill_once"])
    generate = stage_fingerprints(recipe, 0, ["stages.teacher_samples.sampler.hf.decode=generate"])
    assert explicit == plain
    assert generate["teacher_samples"] != plain["teacher_samples"]


def test_weights_other_than_float32_fall_back_to_generate_logged(tiny_model_dir: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """In bf16 a prefill of the prompts and one of their n copies round differently (measured on SmolLM2: the
    samples changed), so only generate draws generate's samples there."""
    bf16 = HFSampler(str(tiny_model_dir), HFSamplerConfig(batch_size=3, dtype="bfloat16"))
    params = SamplingParams(n=2, max_new_tokens=4, seed=1, logprobs=True)
    with caplog.at_level(logging.WARNING, logger="tuna_open.generate.hf_sampler"):
        samples = bf16.generate(PROMPTS[:3], params)
        bf16.generate(PROMPTS[:3], params)
    assert bf16.decode == "generate"
    assert [r.getMessage() for r in caplog.records] == [
        "sampling with transformers generate (decode: generate): torch.bfloat16 weights round a prefill of the "
        "prompts and one of their n copies differently, so the samples would not be generate's"]
    assert len(samples) == 3 and all(len(row) == 2 for row in samples)


def test_sample_categorical_draws_the_distribution_and_never_a_zero_probability_token() -> None:
    """Inverse-CDF sampling against the exact probabilities: a chi-square test over 200k draws of a skewed
    distribution with zero entries (first, middle and last), which ``torch.multinomial`` passes too."""
    from tuna_open.generate.hf_decode import sample_categorical

    probs = torch.tensor([0.0, 0.5, 0.0, 0.25, 0.125, 0.0625, 0.0625, 0.0])
    torch.manual_seed(0)
    draws = sample_categorical(probs.expand(200_000, -1).contiguous())
    counts = torch.bincount(draws, minlength=8).double()
    assert counts[probs == 0].sum() == 0
    expected = probs.double() * draws.numel()
    chi2 = float((((counts - expected) ** 2)[probs > 0] / expected[probs > 0]).sum())
    assert chi2 < 20.5  # 99.9% quantile of chi-square with 4 degrees of freedom: 18.5
    one_hot = torch.zeros(3, 5)
    one_hot[0, 0], one_hot[1, 4], one_hot[2, 2] = 1.0, 1.0, 1.0
    assert sample_categorical(one_hot).tolist() == [0, 4, 2]


def test_match_generate_false_runs_prefill_once_in_bf16_seeded_and_consistent(tiny_model_dir: Path) -> None:
    """The fast mode runs prefill_once in bf16 (no fallback), the same seed gives the same samples, and each
    sample's log-probability is its own tokens' raw log-likelihood under the bf16 model (teacher-forced)."""
    config = HFSamplerConfig(batch_size=3, dtype="bfloat16", match_generate=False)
    fast = HFSampler(str(tiny_model_dir), config)
    params = SamplingParams(n=3, max_new_tokens=6, seed=2, logprobs=True)
    first, again = fast.generate(PROMPTS, params), fast.generate(PROMPTS, params)
    assert fast.decode == "prefill_once"
    assert [[s.text for s in row] for row in first] == [[s.text for s in row] for row in again]
    from tuna_open.generate.hf_decode import sample_prefill_once
    from tuna_open.generate.hf_sampler import response_mask

    tok, model = fast.tokenizer, fast.model
    enc = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    with torch.no_grad():
        tokens, sums = sample_prefill_once(model, enc["input_ids"], enc["attention_mask"], params, tok.pad_token_id,
                                           tok.eos_token_id, match_generate=False)
        rows = params.n * 2
        valid = response_mask(tokens, tok.eos_token_id)
        ids = torch.cat([enc["input_ids"].repeat_interleave(params.n, 0), tokens], 1)
        mask = torch.cat([enc["attention_mask"].repeat_interleave(params.n, 0), valid.long()], 1)
        logits = model(input_ids=ids, attention_mask=mask,
                       position_ids=(mask.cumsum(-1) - 1).clamp_min(0)).logits.float()
    token_lp = torch.log_softmax(logits[:, enc["input_ids"].shape[1] - 1:-1], -1).gather(-1, tokens[..., None])
    expected = (token_lp.squeeze(-1) * valid).sum(1)
    assert sums.shape == (rows,)
    # bf16: the step-by-step decode and one teacher-forced pass round differently, by about 0.01 per token
    assert torch.allclose(sums, expected, atol=0.05 * tokens.shape[1])
    assert not torch.allclose(sums, torch.zeros_like(sums))
    assert HFSamplerConfig(match_generate=False).model_dump()["match_generate"] is False


def test_match_generate_false_with_the_generate_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="match_generate: false applies to decode: prefill_once"):
        HFSamplerConfig(decode="generate", match_generate=False)
