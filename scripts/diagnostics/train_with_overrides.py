"""Train -> seeds -> classifier mAP -> seed evaluation of one synthetic run with method-parameter overrides,
outside the DAG (schedule experiments that should not become config variants): the jobs are the ones Snakemake
would run (same stages, the job configuration the workflow resolves), with ``OVERRIDES`` merged into the method.

    python scripts/diagnostics/train_with_overrides.py RUN OUTDIR '{"train": {"epochs": 30}}' [SEED]
"""
import json, subprocess, sys, time, yaml
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from pathlib import Path
from wsss_core import workflow_config as resolve
run, out, overrides = sys.argv[1], Path(sys.argv[2]).resolve(), json.loads(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
config = yaml.safe_load(open(ROOT / "config.yaml"))
def merge(a, b):
    for k, v in b.items():
        a[k] = merge(dict(a.get(k) or {}), v) if isinstance(v, dict) else v
    return a
def job(role, stage, with_weights=True):
    params = resolve.stage_params(config, "synth", *stage) if stage else {}
    params["split"] = resolve.split_for(config, "synth", role)
    j = resolve.job_config(config, "synth", run, params, with_weights=with_weights)
    j["method"] = merge(j["method"], overrides); j["seed"] = seed
    return resolve.to_json(j)
out.mkdir(parents=True, exist_ok=True)
py = sys.executable
steps = [
    ("train", [py, "-m", "wsss_core.stages.train_method", "--config", job("train", ("train_method",)), "--output", str(out / "model.pt")]),
    ("seeds", [py, "-m", "wsss_core.stages.export_seeds", "--config", job("train", ("export_seeds",)), "--model", str(out / "model.pt"), "--output", str(out / "cams.h5")]),
    ("cls", [py, "-m", "wsss_core.stages.evaluate_classifier", "--config", job("score", None, False), "--model", str(out / "model.pt"), "--output", str(out / "classification.json")]),
    ("eval", [py, "-m", "wsss_core.stages.evaluate_seeds", "--config", job("score", ("evaluate_seeds",), False), "--seeds", str(out / "cams.h5"), "--output", str(out / "eval.json")]),
]
for name, cmd in steps:
    target = {"train": "model.pt", "seeds": "cams.h5", "eval": "eval.json", "cls": "classification.json"}[name]
    if (out / target).exists():
        continue
    t = time.time()
    with open(out / f"{name}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    print(f"{run} {out.name}: {name} {time.time()-t:.0f} s", flush=True)
ev = json.load(open(out / "eval.json")); cl = json.load(open(out / "classification.json"))
print(out.name, "seed mIoU", round(100 * ev["best"]["miou"], 1), "thr", ev["best_threshold"],
      "cls mAP", {h: round(100 * v["map"], 1) for h, v in cl["heads"].items()}, flush=True)
