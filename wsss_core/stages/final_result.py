"""Stage: the per-method ``miou.json`` — the final scores of the configured route, with the seed and
pseudo-mask scores that led to them, so one file tells the whole chain's story."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from wsss_core.stages._cli import run
from wsss_core.utils.atomic import write_json
from wsss_core.utils.provenance import provenance


def _read(path: str | None) -> dict[str, Any] | None:
    return json.loads(Path(path).read_text()) if path else None


def summarise(pipeline: dict[str, str], result: dict[str, Any], seeds: dict[str, Any],
              masks: dict[str, Any] | None) -> dict[str, Any]:
    """Final scores plus the headline numbers of the stages before them."""
    seed_scores = seeds.get("best", seeds)
    summary = {
        "miou": result["miou"],
        "iou": result.get("iou"),
        "pipeline": pipeline,
        "seed_miou": seed_scores.get("miou"),
        "seed_threshold": seeds.get("best_threshold"),
        "mask_miou": masks.get("miou") if masks else None,
        "result": result,
    }
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipeline", type=json.loads, required=True, help="route/refine/segmentation (JSON)")
    parser.add_argument("--result", required=True, help="scores of the evaluation split")
    parser.add_argument("--seeds", required=True, help="seed evaluation JSON")
    parser.add_argument("--masks", default=None, help="pseudo-mask evaluation JSON (multi-stage route, or the method's own pseudo-labels)")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    def body() -> None:
        summary = summarise(args.pipeline, _read(args.result), _read(args.seeds), _read(args.masks))
        summary["sources"] = {"result": args.result, "seeds": args.seeds, "masks": args.masks}
        summary["provenance"] = provenance({"pipeline": args.pipeline}, "wsss_core.stages.final_result")
        write_json(args.output, summary)

    run(body)


if __name__ == "__main__":
    main()
