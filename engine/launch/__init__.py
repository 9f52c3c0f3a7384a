"""Where a job runs: this process, N processes (accelerate launch), or a Slurm cluster."""
