-- One row per dissected (model, layer): how its units were dissected. A layer that `lce extract`
-- dissected has its run (device, versions, timings, the sha256 of the weights it loaded); a
-- layer known only from published labels (the paper's data) names their source and has no run.
with labelled as (
    select model, layer, any_value(source) as source, count(*) as n_labelled_units
    from {{ ref('int_unit_labels') }}
    group by model, layer
),

layers as (
    select model, layer from {{ ref('stg_runs') }}
    union
    select model, layer from labelled
)

select
    layers.model,
    layers.layer,
    coalesce(layers.layer = primary_layers.primary_layer, false) as is_primary_layer,
    case when runs.model is not null then 'lce extract' else labelled.source end as source,
    runs.run_id,
    runs.layer_order,
    runs.weights_sha256,
    runs.device,
    runs.torch_version,
    runs.lce_version,
    runs.normalize,
    runs.non_strict,
    coalesce(runs.n_units, labelled.n_labelled_units) as n_units,
    runs.n_images,
    runs.n_skipped_images,
    runs.seconds,
    runs.started_at,
    runs.settings
from layers
left join {{ ref('stg_runs') }} as runs
    on runs.model = layers.model and runs.layer = layers.layer
left join labelled
    on labelled.model = layers.model and labelled.layer = layers.layer
left join {{ ref('int_model_layers') }} as primary_layers
    on primary_layers.model = layers.model
