"""The statistics the marts compute: the embedding, correlations, stability, prediction,
geometric similarity and the build's notes, as plain functions over frames and arrays.

dbt's Python models (``dbt_project/models``) call these, and the tests call the same functions,
so nothing is computed in two places. They live under ``warehouse`` because the build runs
them: the dbt models import only ``warehouse`` and ``base``, and nothing here reaches up into
``lce`` (the command line, the explorer and the demo).
"""
