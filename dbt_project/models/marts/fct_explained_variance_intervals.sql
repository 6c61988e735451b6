-- 95% bootstrap intervals of each component's explained-variance ratio (0 in a resample whose
-- profiles span fewer dimensions).
with ratios as (
    select distinct resample, component, explained_variance_ratio
    from {{ ref('fct_lce_resamples') }}
    where component is not null
)

select
    component,
    quantile_cont(explained_variance_ratio, 0.025) as lo,
    quantile_cont(explained_variance_ratio, 0.975) as hi
from ratios
group by component
