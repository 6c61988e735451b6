"""dbt Python model: computed by warehouse.stats.matches.fct_unit_match_agreement (shared with the tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import matches


def model(dbt, session):
    dbt.config(materialized="table")
    settings = matches.settings(
        dbt.config.get("similarity_min_images"),
        dbt.config.get("match_permutations"),
        dbt.config.get("seed"),
    )
    return matches.fct_unit_match_agreement(
        dbt.ref("fct_unit_matches").df(),
        dbt.ref("stg_image_features").df(),
        dbt.ref("dim_models").df(),
        settings,
    )
