"""Model-backed rankers on tiny local models: teacher likelihood (Tuna_p) and reward model, each checked against
a direct, unbatched computation with the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rankers import RankerConfigError, RankRequest, build_ranker, order_from_scores
from rankers.llm.templates import format_prompt

REQUESTS = [
    RankRequest(prompt="Add 12 and 30.", candidates=["42", "The answer is 41.", "3 2 1 0"], id="a"),
    RankRequest(prompt="Reverse the list.", input="1 2 3", candidates=["3 2 1", "1 2 3 4 5 6 7 8", "x"], id="b"),
]


def direct_logprob(model, tok, request: RankRequest, candidate: str) -> tuple[float, int]:
    """Sum of log p(candidate tokens + EOS | templated prompt), one sequence at a time, no padding."""
    prompt = tok(format_prompt(request.prompt, request.input))["input_ids"]
    cand = tok(candidate, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt + cand])
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0].log_softmax(-1)
    total = sum(float(logp[len(prompt) + k - 1, t]) for k, t in enumerate(cand))
    return total, len(cand)


@pytest.fixture(scope="module")
def causal_lm(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_teacher_logprob_hf_matches_direct_computation(tiny_model_dir: Path, causal_lm) -> None:
    ranker = build_ranker({"backend": "teacher_logprob", "model": str(tiny_model_dir), "batch_size": 4})
    rankings = ranker.rank(REQUESTS)
    model, tok = causal_lm
    for request, ranking in zip(REQUESTS, rankings):
        expected = [direct_logprob(model, tok, request, c) for c in request.candidates]
        assert ranking.metadata["lengths"] == [n for _, n in expected]
        assert ranking.metadata["logprobs"] == pytest.approx([lp for lp, _ in expected], abs=1e-4)
        assert ranking.scores == pytest.approx([lp / n for lp, n in expected], abs=1e-5)
        assert ranking.order == order_from_scores(ranking.scores) and ranking.metadata["source"] == "hf"
    assert ranker.stats == {"scored_requests": 2, "precomputed_requests": 0, "failed_requests": 0}


def test_batching_does_not_change_scores(tiny_model_dir: Path) -> None:
    one = build_ranker({"backend": "teacher_logprob", "model": str(tiny_model_dir), "batch_size": 1,
                        "lenpen": 0.0}).rank(REQUESTS)
    many = build_ranker({"backend": "teacher_logprob", "model": str(tiny_model_dir), "batch_size": 6,
                         "lenpen": 0.0}).rank(REQUESTS)
    for a, b in zip(one, many):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
        assert a.scores == pytest.approx(a.metadata["logprobs"])  # lenpen 0: the raw sum


def test_carried_logprobs_need_no_model() -> None:
    request = RankRequest(prompt="p", candidates=["a", "b", "c"], logprobs=[-4.0, -3.0, -10.0], lengths=[2, 1, 10])
    ranker = build_ranker({"backend": "teacher_logprob", "lenpen": 1.0})
    [ranking] = ranker.rank([request])
    assert ranking.scores == [-2.0, -3.0, -1.0] and ranking.order == [2, 0, 1]
    assert ranking.metadata["source"] == "request" and ranker.stats["precomputed_requests"] == 1


def test_missing_logprobs_without_model_is_a_config_error() -> None:
    ranker = build_ranker({"backend": "teacher_logprob", "use_request_logprobs": False})
    request = RankRequest(prompt="p", candidates=["a"], logprobs=[-1.0], lengths=[1])
    with pytest.raises(RankerConfigError, match="'model' must name the teacher"):
        ranker.rank([request])


def test_carried_logprobs_of_wrong_size_are_rejected() -> None:
    ranker = build_ranker({"backend": "teacher_logprob"})
    with pytest.raises(ValueError, match="1 logprobs and 2 lengths for 2 candidates"):
        ranker.rank([RankRequest(prompt="p", candidates=["a", "b"], logprobs=[-1.0], lengths=[1, 1])])


def test_teacher_logprob_config_errors() -> None:
    with pytest.raises(RankerConfigError, match="template: .*unknown prompt template 'vicuna'"):
        build_ranker({"backend": "teacher_logprob", "model": "m", "template": "vicuna"})
    with pytest.raises(RankerConfigError, match="engine"):
        build_ranker({"backend": "teacher_logprob", "model": "m", "engine": "tgi"})


def test_reward_model_scores_trl_text_format(reward_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rankings = build_ranker({"backend": "reward_model", "model": str(reward_dir), "batch_size": 4}).rank(REQUESTS)
    model = AutoModelForSequenceClassification.from_pretrained(reward_dir).eval()
    tok = AutoTokenizer.from_pretrained(reward_dir)
    for request, ranking in zip(REQUESTS, rankings):
        expected = []
        for c in request.candidates:  # what TRL's RewardTrainer reads: prompt + response + EOS
            ids = tok(format_prompt(request.prompt, request.input) + c + tok.eos_token, return_tensors="pt")
            with torch.no_grad():
                expected.append(float(model(**ids).logits[0, 0]))
        assert ranking.scores == pytest.approx(expected, abs=1e-4)
        assert ranking.order == order_from_scores(ranking.scores)
    assert len({round(s, 4) for r in rankings for s in r.scores}) > 1  # a real model, not a constant


def test_reward_model_chat_template(reward_dir: Path) -> None:
    ranker = build_ranker({"backend": "reward_model", "model": str(reward_dir), "template": "chat"})
    ranker.rank(REQUESTS[:1])  # loads the model
    ids = ranker.token_ids(REQUESTS[1], "3 2 1")
    text = ranker.tokenizer.decode(ids)
    assert text == "<user>Reverse the list.\n\n1 2 3</s><assistant>3 2 1</s>"


def test_reward_model_chat_template_reads_the_whole_conversation(reward_dir: Path) -> None:
    ranker = build_ranker({"backend": "reward_model", "model": str(reward_dir), "template": "chat"})
    ranker.rank(REQUESTS[:1])  # loads the model
    turns = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"},
             {"role": "user", "content": "Double it."}]
    request = RankRequest(prompt="User: ...", candidates=["10"], messages=turns)
    assert ranker.tokenizer.decode(ranker.token_ids(request, "10")) == \
        "<user>Add 2 and 3.</s><assistant>5</s><user>Double it.</s><assistant>10</s>"
