-- The raw activation map and the S > T mask of each unit on each of its top images
-- (unit_top_maps), with the unit's threshold: what the explorer's gallery outlines. Empty for
-- lakes written before unit_top_maps and for precomputed labels.
select
    maps.model,
    maps.layer,
    maps.unit,
    maps.rank,
    maps.image,
    maps.h,
    maps.w,
    maps."values",
    maps.sh,
    maps.sw,
    maps.mask,
    thresholds.threshold
from {{ ref('stg_unit_top_maps') }} as maps
left join {{ ref('stg_unit_thresholds') }} as thresholds using (model, layer, unit)
