"""dbt Python model: computed by warehouse.stats.build_notes.fct_build_notes (shared with the tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import build_notes, marts


def model(dbt, session):
    dbt.config(materialized="table")
    inputs = marts.inputs(
        dbt.config.get("n_components"),
        dbt.config.get("n_categories"),
        profiles=dbt.ref("fct_concept_profiles").df(),
        models=dbt.ref("dim_models").df(),
        benchmarks=dbt.ref("fct_task_benchmarks").df(),
        agreement=dbt.ref("fct_similarity_agreement").df(),
        match_agreement=dbt.ref("fct_unit_match_agreement").df(),
        runs=dbt.ref("stg_runs").df(),
    )
    return build_notes.fct_build_notes(inputs)
