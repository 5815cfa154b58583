"""LMentry (Efrat et al., 2023): 25 elementary tasks, scored by the official per-task rules, summarised as the
LMentry score.

One concern per module: ``tasks`` (the task names, their groups and the task files), ``official`` (the official
scorers' rules, re-implemented), ``score`` (per-task accuracy and the LMentry score) and ``evaluate`` (the
recipe's ``lmentry`` config: generate, score each answer, summarise).
"""
