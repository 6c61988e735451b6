{#
  The exclude_models var as a SQL list of strings, or none when the var is not set (then the
  lake's model_exclusions apply). Accepts a YAML list or a comma-separated string.
#}
{% macro exclude_models_list() -%}
  {%- set value = var('exclude_models', none) -%}
  {%- if value is none -%}
    {{ return(none) }}
  {%- endif -%}
  {%- if value is string -%}
    {%- set value = value.split(',') | map('trim') | reject('equalto', '') | list -%}
  {%- endif -%}
  {{ return(value) }}
{%- endmacro %}

{% macro sql_string_list(values) -%}
  [{%- for v in values -%}'{{ v | replace("'", "''") }}'{{ ", " if not loop.last }}{%- endfor -%}]::varchar[]
{%- endmacro %}
