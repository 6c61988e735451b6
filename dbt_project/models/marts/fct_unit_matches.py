"""dbt Python model: computed by warehouse.stats.matches.fct_unit_matches (shared with the tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import matches, similarity


def model(dbt, session):
    dbt.config(materialized="table")
    settings = matches.settings(
        dbt.config.get("similarity_min_images"),
        dbt.config.get("match_permutations"),
        dbt.config.get("seed"),
    )
    return matches.fct_unit_matches(
        dbt.ref("stg_image_features").df(),
        dbt.ref("dim_models").df(),
        dbt.ref("fct_unit_labels").df(),
        similarity.features_lake(),
        settings,
    )
