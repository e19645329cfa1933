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
# run: within BUDGET seconds (500 by default, the wheels' install included: the tool's call
#   limit is 600 s, and less where little device time is left), installs the wheels (where PY,
#   python3 by default, lacks pydantic), then:
#   - the recipe (gpu_session.sh's `recipe` step: translated60 trained compiled on cuda, resumed
#     from runs/gpu/$RUN when carried) on 5/8 of the cores (0-9 of 16), with the suite beside it
#     on the rest (SUITE_BUDGET, 3/5 of BUDGET; pytest -n 6, one thread a worker). The suite
#     shares the GPU for its first minutes, so the recipe's wall time is read from its epochs
#     after the suite ended;
#   - the phase's files and the run packed at once (the run as run.tgz.part-*, its
#     checkpoints, in pieces under the tool's 16 MB a file), so a call cut short later still
#     brings them back;
#   - then, for the time left, the profile at batches 2048 and 128 (PROFILE_BATCHES).
#   STEPS_BESIDE (env recipe), STEPS_AFTER (profile) and RECIPE_BUDGET (3/4 of BUDGET) change
#   the plan; RUN, RECIPE and TRAIN_ARGS pass through to gpu_session.sh.
#   Each phase's files are packed when it ends: results-recipe-and-suite.tgz, results-profile.tgz.
# unpack FILES_AT: each results-PHASE.tgz into results/gpu-lease/<UTC time the call started>/PHASE/
#   (each call and phase its own folder, as steps.txt and pytest.txt are appended per call),
#   loose files of a phase cut short into .../loose/, and the run's pieces into runs/gpu/, from
#   where the next call carries it ("runs/gpu") and the recipe step resumes it.
set -euo pipefail

# The files a phase left in $OUT packed as $OUT/results-PHASE.tgz, the loose copies removed
# (the tool brings back 8 files at most, and none more than 2 folders down): a call cut short
# in a later phase still brings this one's back. A missing member is skipped.
pack_phase() {
    local members=() member
    for member in started.txt results suite suite.log; do
        [[ -e $OUT/$member ]] && members+=("$member")
    done
    ((${#members[@]})) || return 0
    tar czf "$OUT/results-$1.tgz" -C "$OUT" "${members[@]}" && (cd "$OUT" && rm -rf "${members[@]}")
}

mode=${1:-}
case $mode in
prepare)
    exclude=$(git rev-parse --git-path info/exclude) # .git may be a file (a worktree)
    mkdir -p "$(dirname "$exclude")"
    for folder in /.whl/ /.gpu-home/; do
        grep -qxF "$folder" "$exclude" 2>/dev/null || echo "$folder" >>"$exclude"
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
    files=("$home"/mnist/*-ubyte)
    [[ -f ${files[0]} ]] || { echo "no MNIST in $home/mnist: run ramlab data fetch first" >&2; exit 1; }
    for file in "${files[@]}"; do  # through a temp file: an interrupted gzip leaves no .gz
        gz=.gpu-home/mnist/$(basename "$file").gz
        [[ -f $gz ]] || { gzip -c "$file" >"$gz.tmp" && mv "$gz.tmp" "$gz"; }
    done
    ls .whl .gpu-home/mnist
    du -sh .whl .gpu-home
    ;;
run)
    : "${OUT:?run is for the device machine, where OUT is the folder that comes back}"
    SECONDS=0 # the budget counts the install too
    date -u +%Y%m%dT%H%M%SZ >"$OUT/started.txt"
    BUDGET=${BUDGET:-500}
    export PY=${PY:-python3}
    if ! "$PY" -c 'import pydantic' 2>/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    fi
    export PYTHONPATH=/tmp/site:$PWD/src RAMLAB_HOME=$PWD/.gpu-home
    export RAMLAB_COMMIT=${RAMLAB_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
    left=$((BUDGET - SECONDS))
    cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) # nproc obeys OMP_NUM_THREADS
    split=$((cores * 5 / 8))                                   # 16 cores: the recipe on 0-9, the suite on 10-15
    if ((split < 1 || split >= cores)); then
        echo "gpu_lease.sh: $cores cores cannot hold the recipe and the suite side by side" >&2
        exit 2
    fi
    taskset -c "$split-$((cores - 1))" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OUT="$OUT/suite" \
        BUDGET="${SUITE_BUDGET:-$((left * 3 / 5))}" STEPS=suite SUITE_WORKERS=6 bash benchmarks/gpu_session.sh \
        >"$OUT/suite.log" 2>&1 &
    taskset -c "0-$((split - 1))" env BUDGET="${RECIPE_BUDGET:-$((left * 3 / 4))}" STEPS="${STEPS_BESIDE:-env recipe}" \
        bash benchmarks/gpu_session.sh || true
    wait || true
    echo "recipe and suite done at $SECONDS s"
    pack_phase recipe-and-suite || echo "gpu_lease.sh: packing the recipe's and suite's files failed" >&2
    if [[ -d $OUT/runs ]]; then # packed now: a call cut short later still brings the run back
        (cd "$OUT" && tar czf run.tgz runs && split -b 15M run.tgz run.tgz.part- && rm -rf run.tgz runs) ||
            echo "gpu_lease.sh: packing the run failed; its files stay under \$OUT/runs" >&2
    fi
    BUDGET=$((BUDGET - SECONDS)) STEPS="${STEPS_AFTER:-profile}" PROFILE_BATCHES="${PROFILE_BATCHES:-2048 128}" \
        bash benchmarks/gpu_session.sh || true
    pack_phase profile || echo "gpu_lease.sh: packing the profile's files failed" >&2
    ls -l "$OUT"
    echo "total $SECONDS s"
    ;;
unpack)
    files_at=${2:?unpack FILES_AT: the folder the device tool put the files of the call in}
    started=$(cat "$files_at/started.txt" 2>/dev/null ||
        tar xzOf "$files_at/results-recipe-and-suite.tgz" started.txt 2>/dev/null || date -u +%Y%m%dT%H%M%SZ)
    into=results/gpu-lease/$started
    mkdir -p "$into"
    for archive in "$files_at"/results-*.tgz; do # each phase in its folder (steps.txt is per phase)
        [[ -f $archive ]] || continue
        phase=$(basename "$archive" .tgz)
        mkdir -p "$into/${phase#results-}"
        tar xzf "$archive" -C "$into/${phase#results-}"
    done
    if [[ -n $(cd "$files_at" && find . -type f ! -name 'run.tgz.part-*' ! -name 'results-*.tgz' -print -quit) ]]; then
        echo "gpu_lease.sh: loose files (a phase cut short before its packing) go to $into/loose" >&2
        mkdir -p "$into/loose"
        (cd "$files_at" && find . -type f ! -name 'run.tgz.part-*' ! -name 'results-*.tgz' -exec cp --parents {} "$OLDPWD/$into/loose" \;)
    fi
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
