"""Paths the tests share: the repository root (recipes, benchmarks) and this folder (servers, workers)."""

from pathlib import Path

HELPERS = Path(__file__).resolve().parent
ROOT = HELPERS.parents[1]
