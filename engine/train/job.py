"""The "train" job: hand the run to the training backend its model needs.

A backend is a module with two functions::

    def handles(model_name: str) -> bool      # is this model mine?
    def run(ctx: engine.runs.JobContext) -> None   # the job contract of engine.jobs

It trains (or resumes, ``ctx.params["resume"]``, through engine.train.resume) the run in
``ctx.run.path``: metrics.jsonl, checkpoints/, then adapter/ (or model/), and raises JobStopped
at a safe point once ``ctx.should_stop()``. Backends are named here rather than imported, so
this package imports none of them and a new one (a launcher, a preference trainer) is one
more module and one more name below.
"""

from __future__ import annotations

import importlib

from engine.launch.processes import supervise
from engine.runs import JobContext, JobStopped
from engine.train import rehearsal

#: Asked in order; the first whose handles() says yes trains the run (transformers: anything).
BACKENDS = ("engine.train.nemo", "engine.train.hf")


def backend_for(model_name: str):
    return next(b for b in map(importlib.import_module, BACKENDS) if b.handles(model_name))


def run(ctx: JobContext) -> None:
    """Entry point of ``python -m engine.jobs RUN_DIR --kind train`` (and of each rank's
    ``--worker`` process). A run with ``launch.where`` processes or slurm is supervised here:
    the backend then runs in the workers that engine.launch starts."""
    cfg = ctx.run.config()
    if cfg.launch.where != "local" and not ctx.worker:
        supervise(ctx, cfg)
        return
    if not ctx.worker and ctx.should_stop():  # asking first: from here on a stop waits for a safe point
        raise JobStopped()
    if ctx.run.rehearsal_path.is_file():
        rehearsal.run(ctx)
        return
    backend_for(cfg.model.name).run(ctx)
