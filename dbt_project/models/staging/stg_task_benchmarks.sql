select model, task, dataset, metric, value, higher_is_better, source
from ({{ lake_scan('task_benchmarks', partition_key='source') }})
