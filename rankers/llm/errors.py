"""The one error of the LLM access layer: a model engine or endpoint that cannot be used as configured.

``rankers.llm`` serves rankers and ``tuna_open``'s samplers alike, so its errors cannot be a ranker's
(``RankerConfigError``): vllm missing under a sampler, or a sampler's server refusing its key, is no ranker
config. It is the same one-line problem for whichever component asked, so the ``tuna-open`` CLI prints it as one
``error:`` line next to ``RankerConfigError`` (``tuna_open.cli.user_errors``), and ``tuna-open validate`` reports
a missing API key as a problem (``tuna_open.preflight``). A call that fails for one item is no EngineError but a
``CallFailed`` (``rankers.llm.openai_client``), recorded as that item's failure.
"""

from __future__ import annotations


class EngineError(ValueError):
    """An engine or endpoint that cannot be used (a missing package, a missing or refused API key, an unknown
    model or URL); the message says what to fix. A ValueError, as ``RankerConfigError`` is: a wrong setting."""
