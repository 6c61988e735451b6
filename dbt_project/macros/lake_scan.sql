{#
  Read one lake table with the column types declared for it in models/staging/_sources.yml.
  The lake folder comes from LCE_LAKE (default $LCE_HOME/lake). A table with no Parquet files yet
  is an empty, typed relation, not an error: a study may lack tallies or benchmarks.
#}
{% macro lake_dir() -%}
  {{ return(env_var('LCE_LAKE', env_var('LCE_HOME', 'lce-data') ~ '/lake')) }}
{%- endmacro %}

{#
  The lake folder as a literal inside a DuckDB glob pattern: '[', '*' and '?' in it (a home
  called "runs[1]" or "a*b") are bracketed so they match only themselves, never a sibling
  folder; quotes are doubled for the SQL string.
#}
{% macro lake_glob() -%}
  {{ return(lake_dir() | replace('[', '[[]') | replace('*', '[*]') | replace('?', '[?]') | replace("'", "''")) }}
{%- endmacro %}

{% macro lake_scan(table, partition_key=none) -%}
  {#- Calling source() registers lineage and docs; the read itself goes through read_parquet. -#}
  {%- set _relation = source('lake', table) -%}
  {%- set node = graph.sources['source.lce.lake.' ~ table] if execute else none -%}
  {%- set pattern = lake_glob() ~ '/' ~ table ~ '/**/*.parquet' -%}
  {%- set has_files = false -%}
  {%- set present = [] -%}
  {%- if execute -%}
    {#- A commit killed half-way is finished by the next lce command; dbt alone must not read it. -#}
    {%- set pending = run_query("select count(*) from glob('" ~ lake_glob() ~ "/.tmp/commit-*/commit.json')") -%}
    {%- if pending.columns[0].values()[0] > 0 -%}
      {{ exceptions.raise_compiler_error("the lake " ~ lake_dir() ~ " has an unfinished commit: run any lce command on it (e.g. `lce build`) to finish it first") }}
    {%- endif -%}
    {%- set found = run_query("select count(*) from glob('" ~ pattern ~ "')") -%}
    {%- set has_files = found.columns[0].values()[0] > 0 -%}
    {%- if has_files -%}
      {#- A column added to the contract after the files were written (runs.weights_sha256) is in
          none of them: it reads as null, so an older lake still builds. -#}
      {%- set described = run_query("select column_name from (describe select * from read_parquet('" ~ pattern ~ "', union_by_name = true))") -%}
      {%- set present = described.columns[0].values() | list -%}
    {%- endif -%}
  {%- endif -%}
  {%- if node is none -%}
    select 1 as placeholder where false
  {%- elif has_files -%}
    select
    {%- for name, column in node.columns.items() %}
      cast({{ adapter.quote(name) if name in present else 'null' }} as {{ column.data_type }}) as {{ adapter.quote(name) }},
    {%- endfor %}
    {%- if partition_key %}
      {#- the folder's value is percent-encoded (warehouse/lake.py): decode it back to the name typed -#}
      url_decode(regexp_extract(filename, '/{{ partition_key }}=([^/]+)/[^/]+$', 1)) as {{ partition_key }},
    {%- endif %}
      filename as lake_file
    from read_parquet('{{ pattern }}', union_by_name = true, hive_partitioning = false, filename = true)
  {%- else -%}
    select
    {%- for name, column in node.columns.items() %}
      cast(null as {{ column.data_type }}) as {{ adapter.quote(name) }},
    {%- endfor %}
    {%- if partition_key %}
      cast(null as varchar) as {{ partition_key }},
    {%- endif %}
      cast(null as varchar) as lake_file
    where false
  {%- endif -%}
{%- endmacro %}
