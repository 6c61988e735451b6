"""dbt Python model: computed by lce.marts.fct_component_task_correlations (shared with tests)."""

from lce import marts


def model(dbt, session):
    dbt.config(materialized="table")
    inputs = marts.MartInputs(
        profiles=dbt.ref("fct_concept_profiles").df(),
        models=dbt.ref("dim_models").df(),
        benchmarks=dbt.ref("fct_task_benchmarks").df(),
        n_components=marts.parse_count(dbt.config.get("n_components"), "n_components"),
        n_categories=marts.parse_count(
            dbt.config.get("n_categories"), "n_categories", allow_auto=True
        ),
    )
    return marts.fct_component_task_correlations(inputs)
