"""The connection keys of every backend or sampler that calls an OpenAI-protocol API, and the API key they resolve to.

Kept apart from the client (``rankers.llm.openai_client``) because these are read without calling anything:
configs mix ``ClientSettings`` in, and ``tuna-open validate`` checks the key of every stage before a run starts.

API key resolution (``resolve_api_key``): ``api_key`` if given (meant for tests), else the environment
variable named by ``api_key_env``; when that is unset and ``base_url`` points at a host other than
``api.openai.com`` (a local vLLM server, a proxy), the placeholder ``"EMPTY"`` is used, since such servers
accept any key unless started with one. The key is held only by the SDK client: it is never logged, never part
of ``stats`` and excluded from cache keys (``rankers.wrappers.cache``).

A ``base_url`` holding credentials (``https://user:password@host/v1``) is refused: it would be written wherever
the URL is (the run directory's configs and reports, error messages, the viewer), and the HTTP client would send
it as Basic auth instead of the API key. ``redact_url`` masks such credentials in any text that is written or
printed, as a second line of defence (a URL that reached a message some other way).
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from rankers.llm.errors import EngineError

OPENAI_HOST = "api.openai.com"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*@")


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it (``scheme://user:password@``) masked as ``***``."""
    return _USERINFO.sub(r"\1***@", text)


class Prices(BaseModel):
    """USD per 1,000 tokens, to put an estimated cost next to the token counts in the report."""

    model_config = ConfigDict(extra="forbid")

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class ClientSettings(BaseModel):
    """Connection keys of every API-calling backend (mixed into their ``Config``)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | list[str] | None = None
    """Server root ending in ``/v1`` (a vLLM server, a proxy); default: api.openai.com. A list of servers serving
    the same model (e.g. one vLLM server per node) spreads requests across them and retries a failed request on
    another (``rankers.llm.endpoints``); ``max_concurrency`` is then the total in flight over all of them."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key."""
    api_key: SecretStr | None = None
    """The key itself; for tests only (a recipe holding a key would leak it into its run directory)."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds before one HTTP request is abandoned (and retried)."""
    max_retries: int = Field(default=3, ge=0)
    """Retries of one call. With the defaults a call that never gets an answer gives up after at most
    4 × 60 s plus backoff (≤ 7 s, or the server's ``Retry-After`` capped at 60 s per wait): ~4–7 minutes."""
    max_consecutive_failures: int = Field(default=8, ge=1)
    """After this many calls in a row failed (retries exhausted, no success in between) the endpoint is taken
    as dead and every further call fails at once, so a dead judge costs minutes per run, not minutes per
    request: the stage then stops on ``max_failure_fraction`` and the next run retries the failed requests."""
    max_concurrency: int = Field(default=8, ge=1)
    """Requests in flight at once."""
    prices: Prices | None = None

    @field_validator("base_url")
    @classmethod
    def _distinct_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("a list of base_url must name each server once, and at least one")
        if any(redact_url(url) != url for url in ([value] if isinstance(value, str) else value or [])):
            raise ValueError("base_url holds credentials (user:password@): put the key in api_key_env, not in "
                             "the URL")
        return value

    def urls(self) -> list[str | None]:
        """The endpoints, in order (``[None]``: the SDK's default, api.openai.com)."""
        return list(self.base_url) if isinstance(self.base_url, list) else [self.base_url]


def resolve_api_key(settings: ClientSettings) -> str:
    """The API key for ``settings`` (see the module docstring); an ``EngineError`` when none can be found."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    key = os.environ.get(settings.api_key_env)
    if key:
        return key
    if all(url and urlparse(url).hostname != OPENAI_HOST for url in settings.urls()):
        return "EMPTY"
    raise EngineError(f"environment variable {settings.api_key_env} is not set (the API key for "
                      f"{settings.base_url or 'https://' + OPENAI_HOST})")
