-- Every unit of every dissected layer with its best concept. Interpretable when it has a
-- concept and its IoU exceeds var('min_iou'); under var('interpretable_rule') = 'null' it must
-- also beat its own null (the best IoU it reaches against other images' labels, over every
-- permutation of `lce extract --null-permutations`). Units without a null (runs with K = 0,
-- published labels) cannot be judged by it and keep the fixed rule; beats_null says which.
with nulls as (
    select model, layer, unit, max(iou) as null_iou, count(*) as null_permutations
    from {{ ref('stg_unit_null_iou') }}
    group by model, layer, unit
),

judged as (
    select
        labels.*,
        nulls.null_iou,
        nulls.null_permutations,
        case when nulls.null_iou is not null then labels.iou > nulls.null_iou end as beats_null,
        coalesce(labels.concept is not null and labels.iou > {{ var('min_iou') }}, false)
            as passes_fixed
    from {{ ref('int_unit_labels') }} as labels
    left join nulls using (model, layer, unit)
)

select
    judged.model,
    judged.layer,
    judged.unit,
    judged.concept,
    judged.category,
    judged.iou,
    {#- YAML reads a bare `null` as none: both mean the null rule -#}
    {% if var('interpretable_rule') in ('null', none) -%}
    judged.passes_fixed and coalesce(judged.beats_null, true) as is_interpretable,
    {%- else -%}
    judged.passes_fixed as is_interpretable,
    {%- endif %}
    (judged.layer = layers.primary_layer) as is_primary_layer,
    judged.source,
    judged.passes_fixed,
    judged.null_iou,
    judged.beats_null,
    judged.passes_fixed and coalesce(judged.beats_null, false) as passes_null
from judged
inner join {{ ref('int_model_layers') }} as layers on layers.model = judged.model
