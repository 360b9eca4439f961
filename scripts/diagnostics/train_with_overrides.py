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
py = sys.executable
for sub in ("train", "seeds"):
    (out / sub).mkdir(parents=True, exist_ok=True)
model, cams = out / "train" / "model.pt", out / "seeds" / "cams.h5"
steps = [  # the DAG's layout: <out>/train/{model.pt,classification.json}, <out>/seeds/{cams.h5,eval.json}
    ("train", model, [py, "-m", "wsss_core.stages.train_method", "--config", job("train", ("train_method",)), "--output", str(model)]),
    ("seeds", cams, [py, "-m", "wsss_core.stages.export_seeds", "--config", job("train", ("export_seeds",)), "--model", str(model), "--output", str(cams)]),
    ("cls", out / "train" / "classification.json", [py, "-m", "wsss_core.stages.evaluate_classifier", "--config", job("score", None, False), "--model", str(model), "--output", str(out / "train" / "classification.json")]),
    ("eval", out / "seeds" / "eval.json", [py, "-m", "wsss_core.stages.evaluate_seeds", "--config", job("score", ("evaluate_seeds",), False), "--seeds", str(cams), "--output", str(out / "seeds" / "eval.json")]),
]
for name, target, cmd in steps:
    if target.exists():
        continue
    t = time.time()
    with open(out / f"{name}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    print(f"{run} {out.name}: {name} {time.time()-t:.0f} s", flush=True)
ev = json.load(open(out / "seeds" / "eval.json")); cl = json.load(open(out / "train" / "classification.json"))
print(out.name, "seed mIoU", round(100 * ev["best"]["miou"], 1), "thr", ev["best_threshold"],
      "cls mAP", {h: round(100 * v["map"], 1) for h, v in cl["heads"].items()}, flush=True)
