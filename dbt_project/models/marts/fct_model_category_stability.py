"""dbt Python model: computed by warehouse.stats.stability.fct_model_category_stability (shared
with the tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import stability


def model(dbt, session):
    dbt.config(materialized="table")
    return stability.fct_model_category_stability(
        dbt.ref("fct_lce_resamples").df(), dbt.ref("dim_model_categories").df()
    )
