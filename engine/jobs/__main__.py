"""``python -m engine.jobs RUN_DIR --kind K``, and ``accelerate launch -m engine.jobs RUN_DIR``."""

import sys

from engine.jobs.runtime import main

if __name__ == "__main__":  # importing it (a tool that imports every module) must not start a job
    sys.exit(main())
