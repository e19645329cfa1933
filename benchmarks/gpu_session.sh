#!/usr/bin/env bash
# Issue #11's GPU measurements in one go, from the repository root on a machine with CUDA:
#
#     [OUT=DIR] [PY=.venv/bin/python] [BUDGET=540] [STEPS="env gpu-tests ..."] bash benchmarks/gpu_session.sh
#
# Steps, in this order (STEPS picks some; default all):
#   env          nvidia-smi, python, torch, CUDA, cuDNN, the GPU, the commit      -> env.txt
#   gpu-tests    pytest -m gpu                                                    -> pytest.txt
#   throughput   benchmarks/throughput.py on cuda, batches 128,512,2048, --compile -> throughput.json/.txt
#   cost         ramlab cost on cuda, sizes 28..800, batch-1 latency and batch 2048 -> cost.json/.txt
#   cost-compiled  the same for the RAM and the ResNet through the compiled fast path (CUDA
#                graphs), sizes COST_COMPILED_SIZES (28,60,100,400): the RAM's latency without
#                its launch overhead; two graphs to compile per row        -> cost-compiled.json/.txt
#   concurrency  benchmarks/gpu_concurrency.py, 1/2/4/8 processes                 -> concurrency.json/.txt
#   concurrency-compiled  not in the default: the same, each process training through the
#                compiled fast path (CUDA graphs), as a study's jobs do -> concurrency-compiled.json/.txt
#   profile      benchmarks/profile_step.py on cuda, the recipe's RAM, batches 128 and 2048: kernels
#                a step, time by category, launch gaps                           -> profile.txt, profile-b*.json
#   suite        the whole suite, python -m pytest -q, with -n SUITE_WORKERS (8) where pytest-xdist
#                is installed (last: it gets the time left)                      -> pytest.txt
#   recipe       not in the default: RECIPE (translated60) trained on cuda, compiled, for the time
#                left, resumed from runs/gpu/$RUN when that run is carried; the run directory
#                is copied to $OUT/runs/gpu/$RUN (checkpoints included) to carry into the next
#                call, until it stops on its own (early stop or its epochs; --test true then
#                reads the test split once)                                      -> recipe-$RUN.txt
#                RUN (default $RECIPE) names the run; TRAIN_ARGS are added to its command, e.g. a
#                tuning run that must not read the test split:
#                RUN=t60-m10-b32 TRAIN_ARGS="--seed 0 --rollouts 10 --batch-size 32 --ema 0.9995
#                --test false" STEPS=recipe (a run started on 2 CPU cores in runs/tune/RUN
#                continues here when copied to runs/gpu/RUN and carried)
# Files go to $OUT/results/gpu (results/gpu when OUT is unset), with steps.txt: each step's
# command, exit status and seconds. Every step runs under `timeout` (its own limit, and never
# past BUDGET seconds since the start, about 9 minutes by default); a failed or timed-out step
# is recorded and the script goes on. The measurements write their JSON as they go, so a step
# cut short keeps what it measured. The full suite rarely fits after the rest in one budget:
# run it in a second call, e.g. STEPS="env suite" (both calls append to pytest.txt).
# CPU_REF: a throughput.py --json file measured on a CPU (default results/throughput-cpu-recipe.json
# when present); the GPU figures are then also given as ratios to it.
# The python environment (torch with CUDA, ramlab importable) must be set up by the caller.
# Through this workplace's device tool (its machines have torch with CUDA but not pydantic,
# and cannot download), benchmarks/gpu_lease.sh prepares the wheels and MNIST here, runs the
# plan for one call there (the recipe with the suite beside it, then the profile) and unpacks
# what comes back. Set RAMLAB_COMMIT=<commit> in a copy of the tree without .git, so the JSON
# files name it. Between calls, the recipe's run directory (runs/gpu/$RUN, checkpoints
# included) comes back and is carried into the next call: `STEPS=recipe` (with the same RUN
# and TRAIN_ARGS) resumes it.
# The first lease (one H200, 2026-12-04, 15 minutes of device time all told): the machine
# started in about 45 s; env took 10 s, gpu-tests 175 s, throughput 178 s, cost 23 s,
# concurrency 80 s; profile and the serial suite did not fit. Left for the next lease: the
# recipe, the profile (does the training step now replay as CUDA graphs, where its time goes),
# the suite, then `STEPS="throughput cost-compiled"` (the RAM's latency without launch overhead).
# The second session lent one (2026-12-06) was told "no new device machine is lent at present"
# at its first call: no device time spent.
# THROUGHPUT_BATCHES (128,512,2048) and PROFILE_BATCHES ("128 2048") shorten those steps.
# A dry run of any step on a CPU, here: TRAIN_ARGS' options come after the script's and win,
# e.g. STEPS=recipe RUN=dry BUDGET=100 TRAIN_ARGS="--device cpu --train-limit 1024
# --eval-limit 256 --threads 2 --compile false --test false" (checked on 2026-12-04: it
# trains, and a second call resumes it with the budget extended).
set -uo pipefail

PY=${PY:-.venv/bin/python}
if [[ ! -x $PY ]] && ! command -v "$PY" >/dev/null; then
    echo "note: no $PY; using python from PATH ($(command -v python))"
    PY=python
fi
RES=${OUT:+$OUT/}results/gpu
BUDGET=${BUDGET:-540}
STEPS=${STEPS:-env gpu-tests throughput cost cost-compiled concurrency profile suite}
CPU_REF=${CPU_REF:-results/throughput-cpu-recipe.json}
export PYTHONUNBUFFERED=1
mkdir -p "$RES"
START=$SECONDS
echo "# gpu_session.sh at $(date -u +%FT%TZ), STEPS=\"$STEPS\", BUDGET=$BUDGET s, PY=$PY" >>"$RES/steps.txt"

wanted() { [[ " $STEPS " == *" $1 "* ]]; }

# run NAME LIMIT LOG COMMAND...: COMMAND under timeout, its output shown and appended to LOG.
run() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START)))
    ((left < limit)) && limit=$left
    if ((limit < 10)); then
        echo "$name: skipped, no time left in BUDGET=$BUDGET s" | tee -a "$RES/steps.txt"
        return
    fi
    local tick=$SECONDS shown
    printf -v shown '%q ' "$@" # the exact command, on one line
    echo "\$ $shown" | tee -a "$log"
    timeout -k 15 "$limit" "$@" 2>&1 | tee -a "$log"
    local rc=${PIPESTATUS[0]} status
    case $rc in
        0) status=ok ;;
        124 | 137) status="TIMED OUT after $limit s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    echo "" >>"$log"
    printf '%-12s %-28s %4d s  $ %s\n' "$name" "$status" $((SECONDS - tick)) "$shown" | tee -a "$RES/steps.txt"
}

if wanted env; then
    run env 60 "$RES/env.txt" nvidia-smi
    run env 60 "$RES/env.txt" "$PY" -c '
import platform, os, torch
from ramlab.provenance import git_commit
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| cudnn", torch.backends.cudnn.version(), "| cpus", os.cpu_count())
print("cuda available:", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
print("commit", git_commit(), "| RAMLAB_COMMIT", os.environ.get("RAMLAB_COMMIT"))'
fi

if wanted gpu-tests; then
    run gpu-tests 180 "$RES/pytest.txt" "$PY" -m pytest -v -rfE -m gpu
fi

if wanted throughput; then
    reference=()
    [[ -f $CPU_REF ]] && reference=(--cpu-reference "$CPU_REF")
    run throughput 240 "$RES/throughput.txt" "$PY" benchmarks/throughput.py --device cuda \
        --batch "${THROUGHPUT_BATCHES:-128,512,2048}" --seconds 2 --compile --json "$RES/throughput.json" ${reference[@]+"${reference[@]}"}
fi

if wanted cost; then
    # batch-1 latency always; throughput at batch 2048 (ramlab cost caps it on CUDA at 4,096 images of
    # 100×100 pixels' worth, so fewer for large images)
    run cost 60 "$RES/cost.txt" "$PY" -c 'import sys; from ramlab.cli import main; sys.exit(main())' \
        cost --device cuda --sizes 28,60,100,200,400,800 --batch 2048 --repeats 5 --json "$RES/cost.json"
fi

if wanted cost-compiled; then
    run cost-compiled 240 "$RES/cost-compiled.txt" "$PY" -c 'import sys; from ramlab.cli import main; sys.exit(main())' \
        cost --device cuda --models ram,resnet --sizes "${COST_COMPILED_SIZES:-28,60,100,400}" --batch 2048 \
        --repeats 10 --compile --json "$RES/cost-compiled.json"
fi

if wanted concurrency; then
    run concurrency 90 "$RES/concurrency.txt" "$PY" benchmarks/gpu_concurrency.py --device cuda \
        --counts 1,2,4,8 --seconds 4 --batch 128 --json "$RES/concurrency.json"
fi

if wanted concurrency-compiled; then
    run concurrency-compiled 180 "$RES/concurrency-compiled.txt" "$PY" benchmarks/gpu_concurrency.py --device cuda \
        --counts 1,2,4,8 --seconds 4 --batch 128 --compile --json "$RES/concurrency-compiled.json"
fi

if wanted profile; then
    # where a compiled step's time goes: GPU kernels a step, their time by category, launch gaps
    for batch in ${PROFILE_BATCHES:-128 2048}; do
        run profile 150 "$RES/profile.txt" "$PY" benchmarks/profile_step.py --device cuda --config recipe \
            --batch "$batch" --steps 20 --json "$RES/profile-b$batch.json"
    done
fi

if wanted recipe; then
    RECIPE=${RECIPE:-translated60}
    RUN=${RUN:-$RECIPE}
    read -r -d '' -a train_args <<<"${TRAIN_ARGS:-}" || true  # every line's words (read stops at NUL)
    run_dir=runs/gpu/$RUN
    # The time budget is the run's total training time: what it has trained so far plus this
    # call's share (its time left, less a minute for compiling, validating and the copy).
    left=$((BUDGET - (SECONDS - START) - 60))
    # What it has trained is last.pt's: a run stopped mid-epoch (by `timeout`) trained past
    # its last validation line.
    budget=$("$PY" -c '
import sys
from pathlib import Path
from ramlab.checkpoint import load_checkpoint
last = Path(sys.argv[1], "last.pt")
seconds = float(load_checkpoint(last).get("train_seconds", 0.0)) if last.is_file() else 0.0
print(round((seconds + int(sys.argv[2])) / 60, 2))' "$run_dir" "$left")
    run recipe $((left + 30)) "$RES/recipe-$RUN.txt" "$PY" -c 'import sys; from ramlab.cli import main; sys.exit(main())' \
        train ram --config "$RECIPE" --device cuda --compile true --threads 8 --progress false \
        --time-budget "$budget" ${train_args[@]+"${train_args[@]}"} --out "$run_dir" --resume
    if [[ -n ${OUT:-} && -d $run_dir ]]; then
        mkdir -p "$OUT/runs/gpu" && cp -r "$run_dir" "$OUT/runs/gpu/"
    fi
fi

if wanted suite; then
    # In parallel where pytest-xdist is there (the device tool's image has it): serially, 116
    # tests took 285 s on an H200 machine whose python takes 10 s to import torch.
    parallel=()
    "$PY" -c 'import xdist' 2>/dev/null && parallel=(-n "${SUITE_WORKERS:-8}")
    # -rfE lists failures at the end; -v names each test as it finishes, so a suite cut short
    # by its time limit still says which tests failed (the first lease's lost that)
    run suite 480 "$RES/pytest.txt" "$PY" -m pytest -v -rfE ${parallel[@]+"${parallel[@]}"}
fi

echo "done in $((SECONDS - START)) s; files in $RES:"
ls -l "$RES"
