select model, task, dataset, metric, value, higher_is_better, source
from {{ ref('stg_task_benchmarks') }}
