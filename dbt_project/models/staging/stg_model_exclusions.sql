select model, reason, source
from ({{ lake_scan('model_exclusions', partition_key='source') }})
