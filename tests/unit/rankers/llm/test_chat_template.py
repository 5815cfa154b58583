"""``template: chat``: prompts rendered by the model's own chat template wherever prompts are built (one BOS,
multi-turn context kept), the teacher scoring the same text, and the OpenAI sampler over chat completions."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.openai_server import OpenAIProtocolServer

from rankers import RankerConfigError, RankRequest, build_ranker
from rankers.llm.openai_client import CallFailed
from rankers.llm.templates import format_prompt
from tuna_open.errors import UserError
from tuna_open.generate import SamplerChoice, build_sampler
from tuna_open.generate.base import SamplingParams
from tuna_open.stages.prompts import build_prompt, prompt_builder, sampler_prompter
from tuna_open.stages.rank import to_request

CONTEXT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."},
           {"role": "assistant", "content": "5"}, {"role": "user", "content": "Now double it."}]
MULTI = {"id": "m", "instruction": "Now double it.", "input": "", "messages": CONTEXT, "output": "10"}
SINGLE = {"id": "s", "instruction": "Add the numbers.", "input": "2 3", "output": "5"}


@pytest.fixture(scope="module")
def chat_tok(tiny_chat_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_chat_model_dir)


RENDERED = ("<|system|>\nBe brief.</s>\n<|user|>\nAdd 2 and 3.</s>\n<|assistant|>\n5</s>\n"
            "<|user|>\nNow double it.</s>\n<|assistant|>\n")


def test_chat_prompt_renders_the_whole_conversation_with_one_bos(chat_tok) -> None:
    import copy

    from tokenizers.processors import TemplateProcessing

    # The tiny tokenizer adds no BOS itself, so the template's BOS stays in the text...
    assert build_prompt(MULTI, "chat", chat_tok) == "<s>" + RENDERED
    # ...and a tokenizer that adds one (Llama's) gets the text without it: one BOS either way.
    adds_bos = copy.deepcopy(chat_tok)
    adds_bos._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    assert build_prompt(MULTI, "chat", adds_bos) == RENDERED
    for tok in (chat_tok, adds_bos):
        ids = tok(build_prompt(MULTI, "chat", tok))["input_ids"]
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    # An Alpaca record is one user turn of instruction and input.
    assert build_prompt(SINGLE, "chat", adds_bos) == "<|user|>\nAdd the numbers.\n\n2 3</s>\n<|assistant|>\n"
    # Alpaca stays the default and is unchanged for single-turn records.
    assert build_prompt(SINGLE, "alpaca") == format_prompt("Add the numbers.", "2 3")


def test_templates_that_cannot_render_a_record_say_so(tiny_model_dir: Path) -> None:
    with pytest.raises(UserError, match="record 'm': template 'alpaca' renders one instruction; a multi-turn"):
        build_prompt(MULTI, "alpaca")
    with pytest.raises(UserError, match="has no chat template"):
        prompt_builder("chat", str(tiny_model_dir))(SINGLE)
    from tuna_open.stages.sample import Config

    chat_api = {"backend": "openai", "openai": {"api": "chat"}}
    Config(name="s", kind="sample", model="m", data="d", template="chat", sampler=chat_api)
    with pytest.raises(ValueError, match="sampler.openai.api 'chat' applies the server's chat template: set "
                                         "template: chat \\(not 'alpaca'\\)"):
        Config(name="s", kind="sample", model="m", data="d", sampler=chat_api)


def test_judges_see_the_conversation_and_the_teacher_scores_the_chat_prompt(tiny_chat_model_dir: Path,
                                                                           chat_tok) -> None:
    request = to_request({**MULTI, "candidates": ["10", "5 5", "twelve"]})
    assert request.messages == CONTEXT and request.prompt.startswith("System: Be brief.\n\nUser: Add 2 and 3.")
    chat = build_ranker({"backend": "teacher_logprob", "model": str(tiny_chat_model_dir), "template": "chat"})
    # The same scores as a raw prompt holding the rendered text: the teacher sees exactly the chat prompt.
    raw = build_ranker({"backend": "teacher_logprob", "model": str(tiny_chat_model_dir), "template": "raw"})
    text = RankRequest(prompt=build_prompt(MULTI, "chat", chat_tok), candidates=request.candidates)
    assert chat.rank([request])[0].scores == pytest.approx(raw.rank([text])[0].scores, abs=1e-5)
    with pytest.raises(RankerConfigError, match="ranker teacher_logprob: request m: template 'raw' renders one "
                                                "instruction; a multi-turn conversation needs template 'chat'"):
        raw.rank([request])


def chat_answers(body: dict) -> dict:
    content = f"re {body['messages'][-1]['content']} seed{body['seed']}"
    return {"content": content, "logprobs": [-0.25] * len(content.split())}


def test_openai_chat_sampler_sends_messages_and_sums_logprobs() -> None:
    prompter = sampler_prompter("chat", "served-model", chat_api=True)
    sent, recorded = zip(*map(prompter, [MULTI, SINGLE]))
    assert sent[0] == CONTEXT and recorded[0].startswith("System: Be brief.")
    params = SamplingParams(n=2, max_new_tokens=5, temperature=0.7, seed=3, logprobs=True)
    with OpenAIProtocolServer(chat=chat_answers) as server:
        choice = SamplerChoice(backend="openai", openai={"base_url": server.base_url, "api_key": "t", "api": "chat"})
        assert choice.chat_api
        out = build_sampler("served-model", choice).generate(list(sent), params)
        assert [s.text for s in out[0]] == ["re Now double it. seed3"] * 2
        assert [s.text for s in out[1]] == ["re Add the numbers.\n\n2 3 seed4"] * 2
        assert (out[0][0].logprob, out[0][0].num_tokens) == (pytest.approx(-1.25), 5)
        body = next(b for b in server.requests if b["seed"] == 3)  # requests run concurrently
        assert (body["messages"], body["n"], body["max_tokens"], body["logprobs"]) == (CONTEXT, 2, 5, True)
        # Without logprobs none are asked; a completions sampler refuses conversations.
        plain = build_sampler("served-model", choice).generate([sent[1]], SamplingParams(n=1))
        assert "logprobs" not in server.requests[-1] and plain[0][0].logprob is None
        completions = SamplerChoice(backend="openai", openai={"base_url": server.base_url, "api_key": "t"})
        with pytest.raises(TypeError, match="completions API prompt strings"):
            build_sampler("served-model", completions).generate([sent[0]], params)


def test_chat_sampler_without_logprobs_in_the_answer_is_an_error() -> None:
    with OpenAIProtocolServer(chat=lambda body: "no logprobs") as server:
        choice = SamplerChoice(backend="openai", openai={"base_url": server.base_url, "api_key": "t", "api": "chat"})
        with pytest.raises(CallFailed, match="unreadable reply .*chat completions with logprobs=true"):
            build_sampler("m", choice).generate([CONTEXT], SamplingParams(n=1, logprobs=True))


def test_stages_render_with_the_template_saved_in_the_model(tiny_chat_model_dir: Path) -> None:
    """Stages get a model directory, not a tokenizer: the template saved with the model is the one that renders."""
    assert prompt_builder("chat", str(tiny_chat_model_dir))(MULTI) == "<s>" + RENDERED


def test_training_stages_render_prompts_in_the_trained_models_format(tiny_chat_model_dir: Path) -> None:
    """Candidates sampled through a chat API (prompt recorded as a transcript) train the student in its template."""
    from types import SimpleNamespace

    from tuna_open.stages.ranked import load_ranked
    from tuna_open.stages.train_dpo import Config

    single = {**SINGLE, "prompt": "User: Add the numbers.\n\n2 3", "candidates": ["5", "6"]}
    foreign = {"id": "x", "prompt": "kept as it is", "candidates": ["a", "b"]}  # no instruction to render from
    records = {"@c": [single, {**MULTI, "prompt": "User: ...", "candidates": ["10", "9"]}, foreign], "@r": []}
    ctx = SimpleNamespace(records=lambda ref, required=(): records[ref], recipe=None)
    model = str(tiny_chat_model_dir)
    cfg = Config(name="d", kind="train_dpo", model=model, rankings="@r", candidates="@c", template="chat")
    candidates, _ = load_ranked(ctx, cfg, model)  # type: ignore[arg-type]
    assert [c["prompt"] for c in candidates] == [
        "<s><|user|>\nAdd the numbers.\n\n2 3</s>\n<|assistant|>\n", "<s>" + RENDERED, "kept as it is"]
    alpaca = cfg.model_copy(update={"template": "alpaca"})
    with pytest.raises(UserError, match="record 'm'"):
        load_ranked(ctx, alpaca, model)  # type: ignore[arg-type]
    records["@c"] = [single]
    assert load_ranked(ctx, alpaca, model)[0][0]["prompt"] == format_prompt("Add the numbers.", "2 3")  # type: ignore[arg-type]


def test_eval_command_takes_a_chat_template(tmp_path: Path, tiny_chat_model_dir: Path, tiny_model_dir: Path) -> None:
    import json

    from click.testing import CliRunner

    from tuna_open.cli import main

    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"id": "m", "messages": CONTEXT + [{"role": "assistant", "content": "10"}]}) + "\n")

    def run(model: Path, template: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["eval", "--model", f"m={model}", "--data", str(data), "--template",
                                           template, "--max-new-tokens", "3", "--run-dir", str(tmp_path / template)])
        return result.exit_code, result.output

    code, out = run(tiny_chat_model_dir, "chat")
    assert code == 0, out
    assert "rougeL" in json.loads((tmp_path / "chat/report.json").read_text())["models"]["m"]
    code, out = run(tiny_model_dir, "chat")  # no chat template: one line naming the problem
    last = out.strip().splitlines()[-1]
    assert code == 2 and last == f"error: template 'chat': {tiny_model_dir} has no chat template (set one in its " \
        "tokenizer, or use template alpaca)", out
    code, out = run(tiny_chat_model_dir, "alpaca")  # a multi-turn record cannot be an Alpaca prompt
    assert code == 2 and "record 'm': template 'alpaca' renders one instruction" in out, out


def test_a_chat_only_endpoint_is_the_tuna_p_teacher(tmp_path: Path) -> None:
    """sample (chat completions, log-probs) → rank (teacher_logprob on the carried log-probs): no local model."""
    import json

    import yaml
    from rich.console import Console

    from tuna_open.data.jsonl import read_jsonl
    from tuna_open.pipeline.runner import run_recipe
    from tuna_open.recipe import load_recipe
    from tuna_open.stages.registry import STAGES

    lengths = iter([2, 1, 3])

    def answer(body: dict) -> dict:  # the longer the answer, the lower its summed log-prob
        words = ["ten"] * next(lengths)
        return {"content": " ".join(words), "logprobs": [-1.0] * len(words)}

    (tmp_path / "chat.jsonl").write_text(json.dumps({"id": "m", "messages": CONTEXT}) + "\n")
    with OpenAIProtocolServer(chat=answer) as server:
        recipe = {"name": "api", "data": {"chat": {"source": "chat.jsonl"}}, "stages": [
            {"name": "teacher", "kind": "sample", "model": "served", "data": "chat", "template": "chat", "n": 3,
             "logprobs": True, "dedup": False,
             "sampler": {"backend": "openai", "openai": {"base_url": server.base_url, "api_key": "t", "api": "chat"}}},
            {"name": "tuna_p", "kind": "rank", "input": "@teacher",
             "ranker": {"backend": "teacher_logprob", "teacher_logprob": {"lenpen": 0.0}}}]}
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
        run_recipe(load_recipe(tmp_path / "r.yaml", STAGES), tmp_path / "run", console=Console(quiet=True))
    assert server.requests[0]["messages"] == CONTEXT and server.requests[0]["logprobs"] is True
    [record] = read_jsonl(tmp_path / "run/stages/teacher/records.jsonl")
    assert record["prompt"].startswith("System: Be brief.") and record["messages"] == CONTEXT
    [ranking] = read_jsonl(tmp_path / "run/stages/tuna_p/records.jsonl")
    assert record["logprobs"] == [-2.0, -1.0, -3.0] and ranking["order"] == [1, 0, 2]
    assert ranking["metadata"]["source"] == "request"


def test_eval_config_refuses_chat_where_suites_render_text() -> None:
    from tuna_open.stages.eval import Config

    chat_api = {"backend": "openai", "openai": {"api": "chat"}}
    Config(name="e", kind="eval", models={"m": "m"}, data="d", template="chat", sampler=chat_api)
    with pytest.raises(ValueError, match="LMentryConfig.template: 'chat' is only supported for the data suite"):
        Config(name="e", kind="eval", models={"m": "m"}, lmentry={"data_dir": "x", "template": "chat"})
    with pytest.raises(ValueError, match="LMentryConfig sends text prompts"):
        Config(name="e", kind="eval", models={"m": "m"}, template="chat", sampler=chat_api,
               lmentry={"data_dir": "x"})
