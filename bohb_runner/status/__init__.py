"""``bohb-runner status``: where a study stands, read from its directory, its nameserver and SLURM."""
