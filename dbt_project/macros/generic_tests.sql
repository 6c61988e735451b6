{# Generic data tests used in the YAML files (the project downloads no packages). #}

{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{% test value_between(model, column_name, min_value, max_value) %}
select *
from {{ model }}
where {{ column_name }} is not null
  and ({{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }})
{% endtest %}

{% test expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}

{% test one_row(model) %}
select n_rows from (select count(*) as n_rows from {{ model }}) where n_rows <> 1
{% endtest %}

{# One test per model for every column that must hold no null: dbt spends about 25 ms of CPU on
   each test node however small the table, and per-column not_null tests were 207 of 318 nodes.
   A failing row names its column; lce build names it too (warehouse/dbt_failures.py). #}
{% test not_null_columns(model, columns) %}
{% for column in columns %}
select '{{ column }}' as column_name from {{ model }} where {{ column }} is null
{% if not loop.last %}union all{% endif %}
{% endfor %}
{% endtest %}
