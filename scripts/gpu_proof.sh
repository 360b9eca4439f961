#!/usr/bin/env bash
# GPU proof at paper scale: one command, at most 8 minutes on one GPU. It measures images/s and peak GPU
# memory of every GPU stage of the papers' chains (plain fp32 against the speed switches) and estimates
# CTI's VOC chain; it writes docs/benchmarks.md and docs/benchmarks.json (wsss_core/benchmarks/gpu_proof.py
# says what and how).
#
#   scripts/gpu_proof.sh                                 # on a GPU machine, from anywhere
#   scripts/gpu_proof.sh --tiny --output-dir /tmp/proof  # the same code path on CPU at tiny sizes
#   PYTHON=/opt/venv/bin/python scripts/gpu_proof.sh --budget-s 300 --items cti_train irn_refine
#
# It lives in scripts/, not in benchmarks/: the top-level benchmarks/ folder is where Snakemake writes the
# per-job benchmark TSVs, and it is git-ignored. The interpreter is $PYTHON, else .venv/bin/python when it
# exists, else python3. The output is also logged to logs/gpu_proof.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
mkdir -p logs
export PYTHONUNBUFFERED=1
"$PYTHON" -m wsss_core.benchmarks.gpu_proof "$@" 2>&1 | tee logs/gpu_proof.log
