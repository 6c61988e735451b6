"""dbt Python model: computed by warehouse.provenance.build_info (the lce and schema of this build,
the lake's last commit).

dbt reads refs and config keys from this file's own source, so they stay here.
"""

from warehouse import provenance


def model(dbt, session):
    dbt.config(materialized="table")
    return provenance.build_info(dbt.config.get("lake"))
