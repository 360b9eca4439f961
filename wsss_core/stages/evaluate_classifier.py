"""Stage ``evaluate_classifier``: classification mAP of a trained method's network on a split.

    python -m wsss_core.stages.evaluate_classifier --config JSON --model model.pt --output classification.json

Stage key: ``split`` (the dataset's score split). For each classification head the method trains
(:meth:`Method.class_scores`: MCTformer's and CTI's ``token`` and ``patch``, ToCo's ``cls`` and ``aux``, ...)
it writes the mAP and per-class AP over the split's images, and the chance level (the classes' mean
frequency). Seeds are read off these classifiers: a head whose mAP is near chance has not learned the
image labels, and nothing downstream of it can be read as a property of the method (issue 13, item 8).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from wsss_core import runtime
from wsss_core.evaluation.classification import classification_report
from wsss_core.stages import _cli
from wsss_core.stages._shared import open_reader, stage_config
from wsss_core.stages.export_seeds import load_trained_model
from wsss_core.utils.atomic import write_json
from wsss_core.utils.device import resolve_device, set_torch_threads
from wsss_core.utils.progress import progress
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.evaluate_classifier"


def main(argv: Sequence[str] | None = None) -> None:
    parser = _cli.stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="trained model (…/train/model.pt)")
    parser.add_argument("--output", required=True, type=Path, help="JSON to write (…/train/classification.json)")
    args = parser.parse_args(argv)

    def run() -> None:
        run_time = runtime.settings(args.config)  # device, threads: not in the provenance hash
        config = runtime.identity(args.config)
        split = stage_config(config).get("split", "train")
        set_torch_threads(run_time)
        reader = open_reader(config)
        method, model = load_trained_model(args.model, config, reader.num_classes)
        model.to(resolve_device(run_time.get("device", "auto"))).eval()
        ids = reader.ids(split)
        labels, scores = [], {}
        with torch.inference_mode():
            for image_id in progress(ids, f"classify {split}", total=len(ids)):
                labels.append(reader.labels(image_id))
                for head, values in method.class_scores(model, reader.image(image_id)).items():
                    scores.setdefault(head, []).append(values)
        report = classification_report(np.stack(labels), {head: np.stack(v) for head, v in scores.items()})
        for head, result in report["heads"].items():
            LOG.info("%s head '%s' on %s (%d images): mAP %.4f (chance %.4f)", method.name, head, split,
                     len(ids), result["map"] or 0.0, report["chance_map"] or 0.0)
        write_json(args.output, {"split": split, **report, "provenance": provenance(config, STAGE)})

    _cli.run(run)


if __name__ == "__main__":
    main()
