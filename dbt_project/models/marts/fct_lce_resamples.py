"""dbt Python model: computed by warehouse.stats.stability (shared with the tests).

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
    boot = stability.bootstrap(
        inputs,
        dbt.ref("fct_unit_labels").df(),
        stability.parse_resamples(dbt.config.get("stability_resamples")),
        stability.parse_seed(dbt.config.get("seed")),
    )
    return stability.fct_lce_resamples(boot)
