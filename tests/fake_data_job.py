"""The study job entry point with the tests' synthetic MNIST: `python tests/fake_data_job.py
STUDY_DIR JOB_ID`, given to `Study(job_command=...)`. A job process cannot see the
`fake_mnist` fixture's monkeypatching, so this installs the same digits by hand, runs
`ramlab.study.job`, and appends the job's start and end times to $RAMLAB_TEST_TIMES."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FAKE_TEST, FAKE_TRAIN, FAKE_TRAIN_SIZE, synthetic_mnist

from ramlab.data import datasets
from ramlab.study.job import main

if __name__ == "__main__":
    datasets._mnist = synthetic_mnist(n_train=FAKE_TRAIN, n_test=FAKE_TEST, seed=0)
    datasets.TRAIN_SIZE = FAKE_TRAIN_SIZE
    start = time.time()
    code = main(sys.argv[1:])
    if os.environ.get("RAMLAB_TEST_TIMES"):
        line = {"id": sys.argv[2], "start": start, "end": time.time(), "code": code}
        with open(os.environ["RAMLAB_TEST_TIMES"], "a") as f:
            f.write(json.dumps(line) + "\n")
    sys.exit(code)
