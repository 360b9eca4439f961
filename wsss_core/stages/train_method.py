"""Stage ``train_method``: train a method's network (a CAM classifier or an end-to-end network).

    python -m wsss_core.stages.train_method --config JSON --output results/{ds}/{m}/train/model.pt

Reads ``dataset``, ``method`` (``name`` + hyper-parameters), ``stage.split`` (default ``train_aug``),
``stage.log_every``, ``stage.checkpoint_every``, ``weights``, ``seed``, ``device``, ``num_workers``
and optionally ``threads`` (torch intra-op threads).
The shared resumable loop keeps its state in ``<output dir>/_state/`` (outside Snakemake's declared
output), so a killed job resumes where it stopped; the state is removed once ``model.pt`` is written.
The model file holds ``method``, ``method_config``, ``num_classes``, ``model`` (state dict on CPU),
``history``, ``images_per_second``, ``seconds`` and ``provenance``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from wsss_core.data import open_dataset
from wsss_core.data.datasets import TrainingDataset
from wsss_core.errors import ConfigError
from wsss_core.methods.base import Method, method_from_config
from wsss_core.models.weights import WeightsCatalog
from wsss_core.stages._cli import run, stage_parser
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.loop import LoopSettings, run_training
from wsss_core.utils.atomic import save_torch
from wsss_core.utils.device import resolve_device, set_torch_threads
from wsss_core.utils.provenance import config_hash, provenance
from wsss_core.utils.seeding import seed_everything

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.train_method"


def train_method(config: Mapping[str, Any], output: Path) -> dict[str, Any]:
    """Train the configured method and write ``output`` atomically; returns the saved payload."""
    started = time.perf_counter()
    seed = int(config.get("seed", 0))
    set_torch_threads(config)
    seed_everything(seed)
    stage = dict(config.get("stage") or {})
    split = stage.get("split", "train_aug")
    reader = open_dataset(config["dataset"])
    method = method_from_config(config, reader.num_classes)
    model = method.build_model(WeightsCatalog.from_config(config.get("weights")))
    dataset = TrainingDataset(reader, split, method.training_sample, seed)
    train = method.config.get("train", {})
    if "batch_size" not in train:
        raise ConfigError(f"method.train.batch_size is missing for method '{method.name}'")
    batch_size = int(train["batch_size"])
    steps_per_epoch = len(dataset) // batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"split '{split}' has {len(dataset)} images, fewer than method.train.batch_size = {batch_size}; "
            "lower the batch size or use a larger split"
        )
    optimizer, scheduler = method.build_optimizer(model, steps_per_epoch)
    settings = LoopSettings(
        batch_size=batch_size,
        num_workers=int(config.get("num_workers", 0)),
        seed=seed,
        log_every=int(stage.get("log_every", 10)),
        checkpoint_every=int(stage.get("checkpoint_every", 0)),
        clip_grad_norm=train.get("clip_grad_norm"),
    )
    state = ResumeState(output.parent / "_state", config_hash(config))
    saved = state.load()
    first_step = 0 if saved is None else int(saved["step"])
    del saved
    total_steps = method.total_steps(steps_per_epoch)
    training_started = time.perf_counter()
    history = run_training(
        task=method,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        dataset=dataset,
        total_steps=total_steps,
        settings=settings,
        state=state,
        device=resolve_device(config.get("device", "auto")),
    )
    training_seconds = time.perf_counter() - training_started
    payload = {
        "method": method.name,
        "method_config": method.config,
        "num_classes": reader.num_classes,
        "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "history": history,
        # this invocation's steps only (a resumed run trained fewer than total_steps)
        "images_per_second": (total_steps - first_step) * batch_size / max(training_seconds, 1e-9),
        "seconds": round(time.perf_counter() - started, 2),
        "provenance": provenance(dict(config), STAGE),
    }
    save_torch(payload, output)
    shutil.rmtree(state.state_dir, ignore_errors=True)
    LOG.info("wrote %s (%.1f images/s)", output, payload["images_per_second"])
    return payload


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="model file to write (…/train/model.pt)")
    args = parser.parse_args(argv)
    run(lambda: train_method(args.config, args.output))


if __name__ == "__main__":
    main()
