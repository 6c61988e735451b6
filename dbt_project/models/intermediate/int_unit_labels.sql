-- Best label per unit from every input: full tallies win over precomputed labels for the
-- same (model, layer).
with from_tallies as (
    select model, layer, unit, concept, category, iou, source
    from {{ ref('int_unit_labels_from_tallies') }}
),

tallied_layers as (
    select distinct model, layer from from_tallies
),

precomputed as (
    select labels.model, labels.layer, labels.unit, labels.concept, labels.category, labels.iou,
        labels.source
    from {{ ref('stg_unit_labels') }} as labels
    anti join tallied_layers
        on tallied_layers.model = labels.model and tallied_layers.layer = labels.layer
)

select * from from_tallies
union all
select * from precomputed
