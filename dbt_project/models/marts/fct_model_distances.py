"""dbt Python model: the computation is lce.marts.fct_model_distances, shared with the tests."""

from lce import marts


def model(dbt, session):
    dbt.config(materialized="table")
    inputs = marts.MartInputs(
        profiles=dbt.ref("fct_concept_profiles").df(),
        models=dbt.ref("dim_models").df(),
        n_components=marts.parse_count(dbt.config.get("n_components"), "n_components"),
        n_categories=marts.parse_count(
            dbt.config.get("n_categories"), "n_categories", allow_auto=True
        ),
    )
    return marts.fct_model_distances(inputs)
