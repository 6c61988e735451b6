-- Each dissected unit's best concept from the full tallies: highest IoU, ties to the lowest
-- concept id (docs/DESIGN.md; macro concept_rank). Units with no overlapping concept keep a
-- row with a null concept.
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
        {{ concept_rank() }} as rank_in_unit
    from {{ ref('stg_unit_concept_tally') }}
),

vocabulary as (
    {{ concept_vocabulary() }}
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
