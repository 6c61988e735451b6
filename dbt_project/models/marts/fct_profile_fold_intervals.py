"""dbt Python model: computed by warehouse.stats.fold_embedding.fct_profile_fold_intervals (shared with the
tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import fold_embedding, marts


def model(dbt, session):
    dbt.config(materialized="table")
    study = marts.inputs(
        dbt.config.get("n_components"),
        dbt.config.get("n_categories"),
        profiles=dbt.ref("fct_concept_profiles").df(),
        models=dbt.ref("dim_models").df(),
        runs=dbt.ref("stg_runs").df(),
    )
    inputs = fold_embedding.inputs(
        study,
        dbt.ref("fct_unit_labels").df(),
        dbt.ref("stg_unit_concept_tally").df(),
        dbt.ref("stg_unit_concept_tally_folds").df(),
        dbt.ref("stg_concepts").df(),
        dbt.config.get("min_iou"),
    )
    return fold_embedding.fct_profile_fold_intervals(inputs)
