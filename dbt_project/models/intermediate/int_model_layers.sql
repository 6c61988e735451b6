-- Each model's primary layer, the one the embedding uses: the first --layer of its latest run,
-- or, for precomputed labels without a run, the first layer by name.
with latest_run as (
    select model, layer
    from {{ ref('stg_runs') }}
    where layer_order = 0
    qualify row_number() over (partition by model order by started_at desc, run_id desc) = 1
),

labelled as (
    select model, min(layer) as layer
    from {{ ref('int_unit_labels') }}
    group by model
)

select
    labelled.model,
    coalesce(latest_run.layer, labelled.layer) as primary_layer
from labelled
left join latest_run on latest_run.model = labelled.model
