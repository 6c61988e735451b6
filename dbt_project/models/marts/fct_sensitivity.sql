-- Filled by `lce sensitivity` (lce/sensitivity.py), which rebuilds the warehouse over a grid of
-- settings and writes one row per setting into a copy of the published file before swapping it
-- in. dbt builds it empty, with its types and descriptions, so the table always exists.
select
    cast(null as integer) as setting,
    cast(null as double) as min_iou,
    cast(null as integer) as n_components,
    cast(null as varchar) as n_categories,
    cast(null as boolean) as is_reference,
    cast(null as integer) as n_models,
    cast(null as integer) as components,
    cast(null as double) as explained_variance,
    cast(null as double) as explained_variance_pc1,
    cast(null as integer) as k,
    cast(null as integer) as n_common_models,
    cast(null as double) as adjusted_rand_index
where false
