-- Each dissected unit's best concept from the full tallies: highest IoU, ties to the lowest
-- concept id (docs/DESIGN.md). Units with no overlapping concept keep a row with a null concept.
with units as (
    select distinct model, layer, unit from {{ ref('stg_unit_thresholds') }}
    union
    select distinct model, layer, unit from {{ ref('stg_unit_concept_tally') }}
),

ranked as (
    select
        model,
        layer,
        unit,
        concept_id,
        iou,
        row_number() over (
            partition by model, layer, unit order by iou desc, concept_id asc
        ) as rank_in_unit
    from {{ ref('stg_unit_concept_tally') }}
),

vocabulary as (
    -- One study is one probe set, so a concept id names one concept.
    select concept_id, any_value(concept) as concept, any_value(category) as category
    from {{ ref('stg_concepts') }}
    group by concept_id
)

select
    units.model,
    units.layer,
    units.unit,
    best.concept_id,
    vocabulary.concept,
    vocabulary.category,
    coalesce(best.iou, 0.0) as iou,
    'tally' as source
from units
left join ranked as best
    on best.model = units.model
    and best.layer = units.layer
    and best.unit = units.unit
    and best.rank_in_unit = 1
left join vocabulary on vocabulary.concept_id = best.concept_id
