"""dbt Python model: computed by warehouse.stats.folds.fct_unit_label_stability (shared with the
tests).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse.stats import folds


def model(dbt, session):
    dbt.config(materialized="table")
    return folds.fct_unit_label_stability(
        dbt.ref("stg_runs").df(),
        dbt.ref("stg_unit_concept_tally").df(),
        dbt.ref("stg_unit_concept_tally_folds").df(),
        dbt.ref("stg_concepts").df().drop_duplicates("concept_id"),
    )
