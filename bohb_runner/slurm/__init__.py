"""A study on SLURM: the sbatch scripts, their submission, and the study's record of its jobs."""
