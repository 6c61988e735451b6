-- How this warehouse was made, in one row: the dissection settings its lake's runs share, the
-- labels and task results it holds, every dbt var of the build under the name the user types,
-- the versions that built it, and the schema version every reader checks (warehouse/schema.py).
{% set excluded = exclude_models_list() %}
{% set text_vars = {} %}
{% for name in ['interpretable_rule', 'n_categories', 'fdr_family'] %}
  {% do text_vars.update({name: "'" ~ (var(name) | string | replace("'", "''")) ~ "'"}) %}
{% endfor %}
with runs as (
    select
        *,
        try_cast(json_extract_string(settings, '$.null_permutations') as integer)
            as null_permutations,
        try_cast(json_extract_string(settings, '$.null_seed') as integer) as null_seed
    from {{ ref('stg_runs') }}
),

-- A number is the value every run shares, else null (dim_runs has each run's); a text lists
-- the distinct values. One lake is one study, so probe, quantile and basis agree by
-- construction (lce extract refuses a run that differs).
dissection as (
    select
        count(*) as n_runs,
        string_agg(distinct probe, '; ' order by probe) as probe,
        string_agg(distinct probe_fingerprint, '; ' order by probe_fingerprint)
            as probe_fingerprint,
        case when count(n_images) = count(*) and min(n_images) = max(n_images)
            then min(n_images) end as n_images,
        case when count(quantile) = count(*) and min(quantile) = max(quantile)
            then min(quantile) end as quantile,
        string_agg(distinct basis, '; ' order by basis) as basis,
        case when count(null_permutations) = count(*)
            and min(null_permutations) = max(null_permutations)
            then min(null_permutations) end as null_permutations,
        case when count(null_seed) = count(*) and min(null_seed) = max(null_seed)
            then min(null_seed) end as null_seed,
        string_agg(distinct torch_version, '; ' order by torch_version) as torch_version
    from runs
),

sources as (
    select
        (select coalesce(list(distinct source order by source), []::varchar[])
            from {{ ref('stg_unit_labels') }}) as label_sources,
        (select coalesce(list(distinct source order by source), []::varchar[])
            from {{ ref('stg_task_benchmarks') }}) as benchmark_sources,
        {% if excluded is none %}
        (select coalesce(list(distinct model order by model), []::varchar[])
            from {{ ref('stg_model_exclusions') }}) as exclude_models,
        'lake' as exclude_models_from
        {% else %}
        list_sort(list_distinct({{ sql_string_list(excluded) }})) as exclude_models,
        'var' as exclude_models_from
        {% endif %}
)

select
    b.schema_version,
    b.lce_version,
    get_current_timestamp() as built_at,
    b.lake_commit,
    '{{ dbt_version }}' as dbt_version,
    ltrim(version(), 'v') as duckdb_version,
    d.torch_version,
    d.n_runs,
    d.probe,
    d.probe_fingerprint,
    d.n_images,
    d.quantile,
    d.basis,
    d.null_permutations,
    d.null_seed,
    s.label_sources,
    s.benchmark_sources,
    {{ text_vars['interpretable_rule'] }} as interpretable_rule,
    {{ var('min_iou') }}::double as min_iou,
    s.exclude_models,
    s.exclude_models_from,
    {{ var('n_components') }}::integer as n_components,
    {{ text_vars['n_categories'] }} as n_categories,
    {{ var('n_boot') }}::integer as n_boot,
    {{ var('seed') }}::integer as seed,
    {{ var('q_threshold') }}::double as q_threshold,
    {{ text_vars['fdr_family'] }} as fdr_family,
    {{ var('stability_resamples') }}::integer as stability_resamples,
    {{ var('similarity_k') }}::integer as similarity_k,
    {{ var('similarity_min_images') }}::integer as similarity_min_images,
    {{ var('similarity_permutations') }}::integer as similarity_permutations
from {{ ref('int_build_info') }} as b
cross join dissection as d
cross join sources as s
