-- Interpretable units and distinct concepts per model and concept category (primary layer).
select
    model,
    category,
    count(*) as n_units,
    count(distinct concept) as n_unique_concepts
from {{ ref('fct_unit_labels') }}
where is_primary_layer and is_interpretable
group by model, category
