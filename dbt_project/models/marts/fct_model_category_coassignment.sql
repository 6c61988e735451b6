-- For every pair of embedded models (both orders, and each model with itself), the share of
-- bootstrap resamples whose k-means put the two in one category.
with partitions as (
    select distinct resample, model, category_id
    from {{ ref('fct_lce_resamples') }}
)

select
    a.model as model_a,
    b.model as model_b,
    avg(case when a.category_id = b.category_id then 1.0 else 0.0 end) as share
from partitions as a
inner join partitions as b on b.resample = a.resample
group by a.model, b.model
