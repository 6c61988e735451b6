"""dbt Python model: computed by warehouse.stats.correlations.fct_category_task_correlations (shared with
the tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import correlations


def model(dbt, session):
    dbt.config(materialized="table")
    settings = correlations.settings(
        dbt.config.get("n_boot"),
        dbt.config.get("seed"),
        dbt.config.get("q_threshold"),
        dbt.config.get("fdr_family"),
    )
    return correlations.fct_category_task_correlations(
        dbt.ref("fct_category_profiles").df(),
        dbt.ref("dim_models").df(),
        dbt.ref("fct_task_benchmarks").df(),
        settings,
    )
