-- Published best labels; '-' (background) becomes no concept.
select
    model,
    layer,
    unit,
    nullif(concept, '-') as concept,
    case when nullif(concept, '-') is null then null else category end as category,
    iou,
    source
from ({{ lake_scan('unit_labels', partition_key='source') }})
