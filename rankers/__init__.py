"""rankers: order N candidate responses to a prompt with any judge (LLM, reward model, likelihood, verifier).

Standalone package (never imports ``tuna_open``)::

    from rankers import build_ranker, RankRequest
    ranker = build_ranker({"backend": "function", "callable": "mypkg.verify:score"})
    rankings = ranker.rank([RankRequest(prompt="2+2?", candidates=["4", "5"])])

Importing the package registers every backend; heavy dependencies (vllm, openai, transformers) are imported
lazily inside the backends, so a missing optional extra only errors when that backend is chosen.
"""

from rankers.base import Ranker, Ranking, RankRequest, order_from_scores
from rankers.registry import REGISTRY, RankerConfig, RankerConfigError, build_ranker, register, validate_config

__all__ = [
    "REGISTRY",
    "RankRequest",
    "Ranker",
    "RankerConfig",
    "RankerConfigError",
    "Ranking",
    "build_ranker",
    "order_from_scores",
    "register",
    "validate_config",
]
