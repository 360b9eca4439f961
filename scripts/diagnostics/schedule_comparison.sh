#!/usr/bin/env bash
# A paper comparison at the seed level under one schedule override, every seed in parallel (a GPU machine, or many
# cores): train_with_overrides.py per run and seed, then compare_seeds on what finished.
#
#   scripts/diagnostics/schedule_comparison.sh '{"train": {"epochs": 30}}' OUTDIR "mctformer cti" "0 1 2"
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OVERRIDES=${1:?overrides JSON}; OUTDIR=${2:?output folder}; RUNS=${3:-"mctformer cti"}; SEEDS=${4:-"0 1 2"}
PYTHON=${PYTHON:-python3}
for run in $RUNS; do
    for seed in $SEEDS; do
        "$PYTHON" scripts/diagnostics/train_with_overrides.py "$run" "$OUTDIR/$run@seed$seed" "$OVERRIDES" "$seed" \
            > "$OUTDIR.$run@seed$seed.log" 2>&1 &
    done
done
mkdir -p "$OUTDIR"
wait
entry="schedule $OVERRIDES (seed level)"
for run in $RUNS; do
    files=""
    for seed in $SEEDS; do
        [[ -f "$OUTDIR/$run@seed$seed/seeds/eval.json" ]] && files="$files${files:+,}$OUTDIR/$run@seed$seed/seeds/eval.json"
    done
    [[ -n "$files" ]] && entry="$entry|$run=$files"
done
"$PYTHON" -m wsss_core.stages.compare_seeds --config '{"dataset": {"name": "synth"}}' --runs "$entry" \
    --output "$OUTDIR/comparisons_seeds.md"
cat "$OUTDIR/comparisons_seeds.md"
