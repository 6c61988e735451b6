-- 95% bootstrap intervals of each model's coordinates (resample scores aligned to the full-data
-- scores by orthogonal Procrustes), as the 2.5% and 97.5% quantiles (linear interpolation,
-- numpy's default).
select
    model,
    component,
    quantile_cont(score, 0.025) as lo,
    quantile_cont(score, 0.975) as hi
from {{ ref('fct_lce_resamples') }}
where component is not null
group by model, component
