"""A ``base_url`` with ``user:password@`` never reaches the run directory, a message or the wire: refused when the
recipe is validated (one line, without the password), and masked by the redaction of everything written."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from helpers.paths import ROOT

from rankers.llm.endpoints import Endpoint
from tuna_open.cli import main
from tuna_open.pipeline.runner import redact

PASSWORD = "hunter2-DO-NOT-LEAK"
URL = f"http://alice:{PASSWORD}@127.0.0.1:9/v1"


@pytest.mark.parametrize("setting", [
    f"ranker.openai.base_url={URL}",
    f'ranker.openai.base_url=["http://127.0.0.1:8/v1", "{URL}"]',
    f"stages.teacher_samples.sampler.openai.base_url={URL}",
])
def test_a_url_with_credentials_is_refused_in_one_line_without_the_password(setting: str) -> None:
    result = CliRunner().invoke(main, ["validate", str(ROOT / "recipes/open_vllm.yaml"), "--set", setting,
                                       "--check-endpoints"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "put the key in api_key_env, not in the URL" in result.output and PASSWORD not in result.output


def test_url_credentials_are_masked_in_what_is_written_and_in_messages() -> None:
    written = redact({"ranker": {"base_url": [URL], "api_key": "sk-x"},
                      "records": [{"error": f"call failed: timed out ({URL}) after 3 retries"}]})
    assert PASSWORD not in str(written) and "sk-x" not in str(written)
    assert written["ranker"]["base_url"] == ["http://***@127.0.0.1:9/v1"]
    assert Endpoint(URL, sdk=None).where == "http://***@127.0.0.1:9/v1"


def test_check_endpoints_checks_each_server_of_a_list() -> None:
    servers = '["http://127.0.0.1:8/v1", "http://127.0.0.1:9/v1"]'
    result = CliRunner().invoke(main, ["validate", str(ROOT / "recipes/open_vllm.yaml"),
                                       "--set", "ranker.backend=openai", "--set", f"ranker.openai.base_url={servers}",
                                       "--check-endpoints"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "127.0.0.1:8/v1 does not answer" in result.output and "127.0.0.1:9/v1 does not answer" in result.output
