"""Seconds from a fresh translated60-recipe RAM to the end of its third compiled training step
(batch 128, 2 threads, a fresh inductor cache), and how many graphs dynamo compiled on the way.
Run it once per checkout to compare two (PYTHONPATH picks the source):

    PYTHONPATH=src python benchmarks/compile_time.py

Prints, never asserts."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="compile-time-")  # before torch

import torch
from throughput import recipe_config, synthetic_batch
from torch._dynamo.utils import counters

import ramlab
from ramlab.fastpath import TrainingStep
from ramlab.models import build_model
from ramlab.models.ram import RAMConfig
from ramlab.provenance import command_line


def main() -> None:
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    print(command_line(), flush=True)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model("ram", RAMConfig(**recipe_config()), image_size=(60, 60))
    images, labels, bboxes = synthetic_batch(128, torch.device("cpu"))
    step = TrainingStep(model, compiled=True)
    generator = torch.Generator().manual_seed(0)
    tick = time.perf_counter()
    for _ in range(3):
        _, objective = step(images, labels, bboxes, generator)
        objective.loss.backward()
    seconds = time.perf_counter() - tick
    graphs = counters["stats"]["unique_graphs"]
    print(f"{ramlab.__file__}: {seconds:.1f} s to the end of step 3; {graphs} graph(s) compiled")


if __name__ == "__main__":
    main()
