-- Every model known to the warehouse (dissected, benchmarked or both), whether it is in the
-- embedding and, if not, why.
{% set excluded = exclude_models_list() %}
with profiled as (
    select
        model,
        count(*) as n_units,
        count(*) filter (where is_interpretable) as n_interpretable_units,
        count(*) filter (where passes_fixed) as n_interpretable_fixed,
        case
            when count(null_iou) > 0 then count(*) filter (where passes_null)
        end as n_interpretable_null
    from {{ ref('fct_unit_labels') }}
    where is_primary_layer
    group by model
),

benchmarked as (
    select model, count(*) as n_benchmarks
    from {{ ref('stg_task_benchmarks') }}
    group by model
),

all_models as (
    select model from profiled
    union
    select model from benchmarked
),

exclusions as (
    {% if excluded is none %}
    select model, string_agg(distinct reason, '; ' order by reason) as reason
    from {{ ref('stg_model_exclusions') }}
    group by model
    {% else %}
    select unnest({{ sql_string_list(excluded) }}) as model, 'excluded by var exclude_models' as reason
    {% endif %}
),

classified as (
    select
        all_models.model,
        coalesce(profiled.n_units, 0) as n_units,
        coalesce(profiled.n_interpretable_units, 0) as n_interpretable_units,
        coalesce(profiled.n_interpretable_fixed, 0) as n_interpretable_fixed,
        profiled.n_interpretable_null,
        layers.primary_layer,
        coalesce(benchmarked.n_benchmarks, 0) as n_benchmarks,
        case
            when profiled.model is null then 'no dissection profile'
            when exclusions.model is not null then exclusions.reason
            when profiled.n_interpretable_units = 0 then 'no interpretable units'
        end as excluded_reason
    from all_models
    left join profiled on profiled.model = all_models.model
    left join benchmarked on benchmarked.model = all_models.model
    left join exclusions on exclusions.model = all_models.model
    left join {{ ref('int_model_layers') }} as layers on layers.model = all_models.model
)

select
    model,
    n_units,
    n_interpretable_units,
    excluded_reason is null as in_embedding,
    excluded_reason,
    primary_layer,
    n_units > 0 as has_profile,
    n_benchmarks > 0 as has_benchmarks,
    n_benchmarks,
    n_interpretable_fixed,
    n_interpretable_null
from classified
