-- Each dissected unit's top images (lce extract --top-images K) with what the explorer shows
-- beside them: the unit's label and IoU, its threshold T, the probe folder its run recorded and
-- whether the lake kept the unit's activation map and S > T mask on the image (unit_top_maps;
-- lakes written before the top-image tables have none). The app reads this mart, never the staging tables.
with runs as (
    select model, layer, probe
    from {{ ref('stg_runs') }}
    qualify row_number() over (partition by model, layer order by started_at desc nulls last) = 1
),

maps as (
    select model, layer, unit, rank from {{ ref('stg_unit_top_maps') }}
)

select
    top.model,
    top.layer,
    top.unit,
    top.rank,
    top.image,
    top.max_activation,
    labels.concept,
    labels.category,
    labels.iou,
    thresholds.threshold,
    case when runs.probe like 'broden:%' then substr(runs.probe, 8) end as probe_dir,
    maps.unit is not null as has_map
from {{ ref('stg_unit_top_images') }} as top
left join {{ ref('fct_unit_labels') }} as labels using (model, layer, unit)
left join {{ ref('stg_unit_thresholds') }} as thresholds using (model, layer, unit)
left join runs using (model, layer)
left join maps using (model, layer, unit, rank)
