-- Each dissected unit's five best concepts by IoU from the full tallies, with the tally's
-- counts: its runner-up labels beside its label, as NetDissect lists them. Rank 1 is the unit's
-- label in fct_unit_labels (the same order, macro concept_rank). Layers known only from
-- precomputed labels (the paper's published data) have no tallies and no rows here.
-- The `ranked` step repeats the shape of int_unit_labels_from_tallies.sql's on purpose: the
-- ranking rule itself is shared (macro concept_rank), the column lists differ (this mart keeps
-- the counts, the label keeps one row per unit, also units with no tally).
with ranked as (
    select
        model,
        layer,
        unit,
        concept_id,
        iou,
        intersection,
        activation_in_category,
        label_pixels,
        {{ concept_rank() }} as rank
    from {{ ref('stg_unit_concept_tally') }}
    qualify rank <= 5
),

vocabulary as (
    {{ concept_vocabulary() }}
)

select
    ranked.model,
    ranked.layer,
    ranked.unit,
    ranked.rank::integer as rank,
    ranked.concept_id,
    vocabulary.concept,
    vocabulary.category,
    ranked.iou,
    ranked.intersection,
    ranked.activation_in_category,
    ranked.label_pixels
from ranked
left join vocabulary on vocabulary.concept_id = ranked.concept_id
