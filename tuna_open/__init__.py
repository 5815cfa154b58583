"""tuna-open: Tuna (Li et al., EMNLP 2023) instruction tuning with pluggable teachers and judges.

Entry point: ``tuna-open run RECIPE`` (``tuna_open.cli``) → the runner (``tuna_open.pipeline.runner``) → one
module per stage kind (``tuna_open.stages``), which call the rankers (``rankers``) and the trainers
(``tuna_open.train``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tuna-open")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+source"
