"""Studies: many models, their layers, one probe set and one set of dissection settings, read
from a ``study.toml`` (``file``), planned against the lake (``plan``), run whole or as one shard
of a job array (``run``), and written out as SLURM scripts (``sbatch``)."""
