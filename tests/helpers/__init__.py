"""Servers, workers and builders the tests share (on the path through pyproject's ``pythonpath``)."""
