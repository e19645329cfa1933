#!/usr/bin/env bash
# Issue #11's GPU work in one call of this workplace's device tool (15 minutes of device time a
# session, 10 a call; the machine has torch with CUDA but cannot download anything):
#
#   here, before the call:   bash benchmarks/gpu_lease.sh prepare
#   the call (carry [".whl", ".gpu-home"], plus "runs/gpu" when a run goes on):
#                            bash benchmarks/gpu_lease.sh run
#   here, after it:          bash benchmarks/gpu_lease.sh unpack FILES_AT
#
# prepare: the wheels the machine lacks (pydantic and its three, at this .venv's versions)
#   into .whl/, and MNIST from ~/.cache/ramlab gzipped into .gpu-home/mnist (11 MB; loading it
#   there unpacks 53 MB beside it, so only there), both ignored through .git/info/exclude.
# run: installs the wheels (where PY, python3 by default, lacks pydantic), then, within BUDGET seconds (560 by default):
#   - the recipe (gpu_session.sh's `recipe` step: translated60 trained compiled on cuda, resumed
#     from runs/gpu/$RUN when carried) on 5/8 of the cores (0-9 of 16), with the suite beside it
#     on the rest (SUITE_BUDGET, 330 s; pytest -n 6, one thread a worker). The suite shares the GPU for its
#     first minutes, so the recipe's wall time is read from its epochs after the suite ended;
#   - then, for the time left, the profile at batches 2048 and 128 (PROFILE_BATCHES).
#   STEPS_BESIDE (env recipe), STEPS_AFTER (profile) and RECIPE_BUDGET (420) change the plan;
#   RUN, RECIPE and TRAIN_ARGS pass through to gpu_session.sh.
#   It packs $OUT as results.tgz (every step's files) and run.tgz.part-* (the run, with its
#   checkpoints, in pieces under the tool's 16 MB a file).
# unpack FILES_AT: results.tgz into results/gpu-lease/<UTC time>/ (each call its own folder, as
#   steps.txt and pytest.txt are appended per call), and the run's pieces into runs/gpu/, from
#   where the next call carries it ("runs/gpu") and the recipe step resumes it.
set -euo pipefail

mode=${1:-}
case $mode in
prepare)
    mkdir -p .git/info
    for folder in /.whl/ /.gpu-home/; do
        grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >>.git/info/exclude
    done
    PY=${PY:-.venv/bin/python}
    wheels=()
    for name in pydantic pydantic_core annotated-types typing-inspection; do
        wheels+=("$name==$("$PY" -c 'import sys, importlib.metadata as m; print(m.version(sys.argv[1]))' "$name")")
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${wheels[@]}"
    home=${RAMLAB_HOME:-$HOME/.cache/ramlab}
    mkdir -p .gpu-home/mnist
    for file in "$home"/mnist/*-ubyte; do
        [[ -f .gpu-home/mnist/$(basename "$file").gz ]] || gzip -c "$file" >".gpu-home/mnist/$(basename "$file").gz"
    done
    ls .whl .gpu-home/mnist
    du -sh .whl .gpu-home
    ;;
run)
    : "${OUT:?run is for the device machine, where OUT is the folder that comes back}"
    export PY=${PY:-python3}
    if ! "$PY" -c 'import pydantic' 2>/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    fi
    export PYTHONPATH=/tmp/site:$PWD/src RAMLAB_HOME=$PWD/.gpu-home
    export RAMLAB_COMMIT=${RAMLAB_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
    BUDGET=${BUDGET:-560}
    SECONDS=0
    cores=$(nproc)
    split=$((cores * 5 / 8)) # 16 cores: the recipe on 0-9, the suite on 10-15
    taskset -c "$split-$((cores - 1))" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OUT="$OUT/suite" BUDGET="${SUITE_BUDGET:-330}" \
        STEPS=suite SUITE_WORKERS=6 bash benchmarks/gpu_session.sh >"$OUT/suite.log" 2>&1 &
    taskset -c "0-$((split - 1))" env BUDGET="${RECIPE_BUDGET:-420}" STEPS="${STEPS_BESIDE:-env recipe}" bash benchmarks/gpu_session.sh || true
    wait || true
    echo "recipe and suite done at $SECONDS s"
    BUDGET=$((BUDGET - SECONDS)) STEPS="${STEPS_AFTER:-profile}" PROFILE_BATCHES="${PROFILE_BATCHES:-2048 128}" \
        bash benchmarks/gpu_session.sh || true
    cd "$OUT"
    tar czf results.tgz results suite suite.log
    if [[ -d runs ]]; then
        tar czf run.tgz runs && split -b 15M run.tgz run.tgz.part- && rm run.tgz
    fi
    rm -rf results suite suite.log runs
    ls -l
    echo "total $SECONDS s"
    ;;
unpack)
    files_at=${2:?unpack FILES_AT: the folder the device tool put the files of the call in}
    into=results/gpu-lease/$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$into"
    tar xzf "$files_at/results.tgz" -C "$into"
    if compgen -G "$files_at/run.tgz.part-*" >/dev/null; then
        cat "$files_at"/run.tgz.part-* | tar xzf - # runs/gpu/$RUN, checkpoints included
    fi
    find "$into" -type f | sort
    ;;
*)
    echo "usage: bash benchmarks/gpu_lease.sh prepare | run | unpack FILES_AT (see its header)" >&2
    exit 2
    ;;
esac
