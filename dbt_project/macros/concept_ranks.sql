{#
  A unit's concepts ranked by IoU, best first, ties to the lowest concept id (docs/DESIGN.md):
  the one order behind a unit's label (int_unit_labels_from_tallies, rank 1) and its runner-up
  labels (fct_unit_top_concepts), so the two can never disagree on rank 1.
#}
{% macro concept_rank() -%}
  row_number() over (partition by model, layer, unit order by iou desc, concept_id asc)
{%- endmacro %}

{#- One study is one probe set, so a concept id names one concept. -#}
{% macro concept_vocabulary() -%}
  select concept_id, any_value(concept) as concept, any_value(category) as category
  from {{ ref('stg_concepts') }}
  group by concept_id
{%- endmacro %}
