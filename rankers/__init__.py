"""rankers: order N candidate responses to a prompt with any judge (LLM, reward model, likelihood, verifier).

Standalone package (never imports ``tuna_open``)::

    from rankers import build_ranker, RankRequest
    ranker = build_ranker({"backend": "function", "callable": "mypkg.verify:score"})
    rankings = ranker.rank([RankRequest(prompt="2+2?", candidates=["4", "5"])])

Backends are imported on demand (see ``rankers.registry.BACKENDS``); heavy dependencies (vllm, openai,
transformers) are imported lazily, so a missing optional extra only errors when that backend is chosen. A ranker
config that cannot be used is a ``RankerConfigError``; an engine or endpoint that cannot be used (vllm missing, an
API key missing or refused) is the LLM layer's ``EngineError``, which ``tuna_open``'s samplers raise too.
"""

from rankers.base import Ranker, Ranking, RankRequest, order_from_scores
from rankers.config import RankerConfig, RankerConfigError
from rankers.llm.errors import EngineError
from rankers.registry import BACKENDS, build_ranker, validate_config

__all__ = [
    "BACKENDS",
    "EngineError",
    "RankRequest",
    "Ranker",
    "RankerConfig",
    "RankerConfigError",
    "Ranking",
    "build_ranker",
    "order_from_scores",
    "validate_config",
]
