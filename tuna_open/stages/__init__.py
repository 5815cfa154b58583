"""Stage kinds: one module per kind, each declaring its ``STAGE`` (``tuna_open.stages.stage.Stage``), all listed in
``tuna_open.stages.registry.STAGES``.

``context`` is what a stage sees of the run, ``ranked`` the config parts and loading shared by the stages that call
rankers or learn from rankings, ``prompts`` how stages render a record for a model, ``rank_viewer`` the rank stage's
HTML page.
"""
