"""dbt Python model: computed by warehouse.stats.marts.dim_model_categories (shared with the tests);
the stability column by warehouse.stats.stability.with_stability from the bootstrap's co-assignments.

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import marts, stability


def model(dbt, session):
    dbt.config(materialized="table")
    inputs = marts.inputs(
        dbt.config.get("n_components"),
        dbt.config.get("n_categories"),
        profiles=dbt.ref("fct_concept_profiles").df(),
        models=dbt.ref("dim_models").df(),
    )
    categories = marts.dim_model_categories(inputs)
    return stability.with_stability(categories, dbt.ref("fct_model_category_coassignment").df())
