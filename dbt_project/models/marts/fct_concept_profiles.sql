-- The paper's profile: per model, interpretable units per concept (primary layer), divided by
-- the number of distinct concepts of that category seen across all models.
with units as (
    select model, concept, category
    from {{ ref('fct_unit_labels') }}
    where is_primary_layer and is_interpretable
),

counts as (
    select model, concept, category, count(*) as n_units
    from units
    group by model, concept, category
),

vocabulary as (
    select category, count(distinct concept) as n_category_concepts
    from units
    group by category
)

select
    counts.model,
    counts.concept,
    counts.category,
    counts.n_units,
    counts.n_units / vocabulary.n_category_concepts as weight
from counts
inner join vocabulary on vocabulary.category = counts.category
