"""Launching studies on SLURM clusters."""
