-- Every unit of every dissected layer with its best concept; interpretable when it has a
-- concept and its IoU exceeds var('min_iou').
select
    labels.model,
    labels.layer,
    labels.unit,
    labels.concept,
    labels.category,
    labels.iou,
    coalesce(labels.concept is not null and labels.iou > {{ var('min_iou') }}, false) as is_interpretable,
    (labels.layer = layers.primary_layer) as is_primary_layer,
    labels.source
from {{ ref('int_unit_labels') }} as labels
inner join {{ ref('int_model_layers') }} as layers on layers.model = labels.model
