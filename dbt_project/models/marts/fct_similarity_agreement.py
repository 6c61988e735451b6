"""dbt Python model: computed by warehouse.stats.similarity.fct_similarity_agreement (shared with the tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import similarity


def model(dbt, session):
    dbt.config(materialized="table")
    settings = similarity.settings(
        dbt.config.get("similarity_k"),
        dbt.config.get("similarity_min_images"),
        dbt.config.get("similarity_permutations"),
        dbt.config.get("seed"),
        dbt.config.get("similarity_null_permutations"),
    )
    return similarity.fct_similarity_agreement(
        dbt.ref("fct_model_similarity").df(),
        dbt.ref("fct_model_distances").df(),
        settings,
    )
