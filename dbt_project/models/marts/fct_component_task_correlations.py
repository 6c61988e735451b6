"""dbt Python model: computed by warehouse.stats.marts.fct_component_task_correlations (shared with the tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import correlations, marts


def model(dbt, session):
    dbt.config(materialized="table")
    inputs = marts.inputs(
        dbt.config.get("n_components"),
        dbt.config.get("n_categories"),
        profiles=dbt.ref("fct_concept_profiles").df(),
        models=dbt.ref("dim_models").df(),
        benchmarks=dbt.ref("fct_task_benchmarks").df(),
    )
    settings = correlations.settings(
        dbt.config.get("n_boot"),
        dbt.config.get("seed"),
        dbt.config.get("q_threshold"),
        dbt.config.get("fdr_family"),
    )
    return marts.fct_component_task_correlations(inputs, settings)
