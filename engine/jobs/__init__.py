"""Background jobs: the queue (:mod:`.queue`, in the UI, CLI or a finishing job), the job
process (:mod:`.runtime`, ``python -m engine.jobs RUN_DIR --kind K``) and why a job failed
(:mod:`.reasons`). A kind's entry point (``JOB_KINDS``, by name) is ``run(ctx: JobContext)``;
it writes only inside ``ctx.run.path`` and never imports this package.
"""

from engine.jobs.queue import JOB_KINDS, job_environment, launch, resume, schedule, stop, submit, wait
from engine.jobs.reasons import classify
from engine.runs import JobContext, JobStopped, Reason

__all__ = ["JOB_KINDS", "JobContext", "JobStopped", "Reason", "classify", "job_environment", "launch", "resume",
           "schedule", "stop", "submit", "wait"]
