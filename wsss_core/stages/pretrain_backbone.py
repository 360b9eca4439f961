"""Stage ``pretrain_backbone``: pretrain one backbone on the synthetic pool (the ImageNet / DINO stand-in).

    python -m wsss_core.stages.pretrain_backbone --config JSON --pool results/synth/pretrain_pool \\
        --output results/synth/pretrained/vit_synth.safetensors --report results/synth/pretrained/vit_synth.json

Reads ``stage`` (one ``pretraining.backbones.<name>`` entry: ``backbone`` + ``backbone_args`` (the
registered backbone and its constructor arguments), ``objective`` + ``objective_args``
(:mod:`wsss_core.pretraining`), and the recipe below), ``seed``; run-time (``--runtime``, section
``pretraining.backbones.<name>``): ``device``, ``num_workers``, ``log_every`` (20).

Writes the backbone's weights as a safetensors file in the key layout its real checkpoint has (timm's
names, with the classifier under timm's classifier name; MiT and ResNet-38 with ``head.*``), checks that
the file loads through the same verified path as real weights, and a report: held-out top-1 of the
classifier (supervised), k-NN top-1 of the pooled features on the pool's held-out images (both
objectives; DINO's protocol: k = 20, temperature 0.07, cosine similarity), the training history,
images/s and wall time. Training runs in the shared resumable loop (state in ``<output dir>/_state_<name>/``).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.scheduler import CosineLRScheduler
from torch.utils.data import Dataset

from wsss_core import runtime
from wsss_core.data.synth_pretrain import read_pool
from wsss_core.data.transforms import normalize_to_tensor, resize
from wsss_core.errors import ConfigError
from wsss_core.models.backbones import create_backbone
from wsss_core.models.weights import PretrainedWeights
from wsss_core.pretraining.networks import classifier_name, feature_dim, pooled_features
from wsss_core.pretraining.recipe import Recipe
from wsss_core.stages._cli import run, stage_parser
from wsss_core.training.checkpoint import ResumeState
from wsss_core.training.loop import LoopSettings, run_training
from wsss_core.training.progress import TrainingProgress
from wsss_core.utils.atomic import atomic_path, write_json
from wsss_core.utils.device import resolve_device, set_torch_threads
from wsss_core.utils.provenance import code_fingerprint, config_hash, provenance
from wsss_core.utils.seeding import sample_rng, seed_everything

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.pretrain_backbone"


class PoolDataset(Dataset):
    """Pool images through an objective's ``training_sample``; keys ``(epoch, index)`` as the loop draws."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, sample_fn: Any, seed: int) -> None:
        self.images, self.labels, self.sample_fn, self.seed = images, labels, sample_fn, seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = (int(key[0]), int(key[1])) if isinstance(key, (tuple, list)) else (0, int(key))
        return self.sample_fn(self.images[index], int(self.labels[index]), sample_rng(self.seed, epoch, index))


def optimizer_groups(parameters: Sequence[torch.nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and kernels only (timm's and DINO's grouping); biases and norms without."""
    decay = [p for p in parameters if p.ndim > 1]
    plain = [p for p in parameters if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay, "regularized": True},
            {"params": plain, "weight_decay": 0.0, "regularized": False}]


@torch.no_grad()
def embed(backbone: torch.nn.Module, images: np.ndarray, size: int, device: torch.device,
          batch: int = 256) -> torch.Tensor:
    """l2-normalised pooled features of whole images resized to ``size``."""
    backbone.eval()
    features = []
    for start in range(0, len(images), batch):
        chunk = [images[i] if images.shape[1] == size else resize(images[i], (size, size))[0]
                 for i in range(start, min(start + batch, len(images)))]
        tensor = torch.stack([normalize_to_tensor(image) for image in chunk]).to(device)
        features.append(F.normalize(pooled_features(backbone, tensor).float(), dim=1).cpu())
    return torch.cat(features)


def knn_top1(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
             num_classes: int, k: int = 20, temperature: float = 0.07) -> float:
    """DINO's weighted k-NN classifier: the ``k`` most cosine-similar training features vote with weight
    ``exp(similarity / temperature)``; top-1 accuracy on ``test``."""
    correct = 0
    for start in range(0, len(test), 512):
        similarity = test[start:start + 512] @ train.T
        top, index = similarity.topk(min(k, len(train)), dim=1)
        votes = torch.zeros(len(top), num_classes)
        votes.scatter_add_(1, train_labels[index], (top / temperature).exp())
        correct += int((votes.argmax(1) == test_labels[start:start + 512]).sum())
    return correct / len(test)


def export_state(objective: Any, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's tensors (+ the classifier under the name its real checkpoint uses), contiguous."""
    backbone = objective.backbone(model)
    state = dict(backbone.state_dict())
    head = objective.head_state(model)
    if head:
        name = classifier_name(backbone)
        state.update({key.replace("head.", f"{name}.", 1): value for key, value in head.items()})
    return {key: value.detach().cpu().contiguous().clone() for key, value in state.items()}


def pretrain(config: Mapping[str, Any], pool: Path, output: Path, report: Path) -> dict[str, Any]:
    """Train, evaluate and export one backbone; returns the report."""
    started = time.perf_counter()
    section = runtime.PRETRAINING_BACKBONE
    identity = runtime.identity(config, section)  # the resume key and provenance: no run-time value
    recipe = Recipe.load(identity.get("stage"), "pretraining.backbones.<name>")
    run_time = runtime.settings(config, section)  # device, num_workers, threads, log_every
    seed = int(config.get("seed", 0))
    set_torch_threads(run_time)
    device = resolve_device(run_time.get("device", "auto"))
    seed_everything(seed)
    train_images, train_labels = read_pool(pool, "train")
    val_images, val_labels = read_pool(pool, "val")
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    backbone = recipe.build_backbone(f"pretraining.backbones.{output.stem}")
    objective = recipe.build_objective(num_classes)
    model = objective.build_model(backbone, feature_dim(backbone))
    dataset = PoolDataset(train_images, train_labels, objective.training_sample, seed)
    steps_per_epoch = len(dataset) // recipe.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"pretraining.backbones batch_size {recipe.batch_size} exceeds the pool's {len(dataset)} images")
    total_steps = recipe.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(optimizer_groups(objective.parameters_to_train(model), recipe.weight_decay),
                                  lr=recipe.lr)
    objective.attach_optimizer(optimizer)
    scheduler = CosineLRScheduler(
        optimizer, t_initial=total_steps, lr_min=recipe.min_lr, warmup_t=recipe.warmup_epochs * steps_per_epoch,
        warmup_lr_init=recipe.lr * 1e-3, t_in_epochs=False,
    )
    state = ResumeState(output.parent / f"_state_{output.stem}", config_hash(identity), code_fingerprint(STAGE))
    settings = LoopSettings(
        batch_size=recipe.batch_size, num_workers=int(run_time.get("num_workers", 0)), seed=seed,
        log_every=int(run_time.get("log_every", 20)),
        clip_grad_norm=None if objective.clips_gradients else (recipe.clip_grad_norm or None),
    )
    training_started = time.perf_counter()
    saved = state.load()
    first_step = 0 if saved is None else int(saved["step"])
    del saved
    history = run_training(task=objective, model=model, optimizer=optimizer, scheduler=scheduler, dataset=dataset,
                           total_steps=total_steps, settings=settings, state=state, device=device)
    training_seconds = time.perf_counter() - training_started
    objective.finish(model, TrainingProgress(recipe.epochs, total_steps, steps_per_epoch, total_steps))

    exported = objective.backbone(model)
    train_features = embed(exported, train_images, recipe.image_size, device)
    val_features = embed(exported, val_images, recipe.image_size, device)
    metrics: dict[str, float] = {"knn_top1": knn_top1(
        train_features, torch.as_tensor(train_labels), val_features, torch.as_tensor(val_labels), num_classes,
        recipe.knn_k, recipe.knn_temperature)}
    if recipe.objective == "supervised":
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(torch.stack([normalize_to_tensor(
                image if image.shape[0] == recipe.image_size else resize(image, (recipe.image_size,) * 2)[0])
                for image in val_images[start:start + 256]]).to(device)).cpu()
                for start in range(0, len(val_images), 256)])
        metrics["top1"] = float((logits.argmax(1).numpy() == val_labels).mean())
    state_dict = export_state(objective, model)
    with atomic_path(output) as temp:
        save_file(state_dict, str(temp), metadata={"backbone": recipe.backbone, "objective": recipe.objective})
    # the file must load exactly as a real checkpoint does (timm's loader + the tensor-by-tensor check)
    create_backbone(recipe.backbone, PretrainedWeights(output.stem, output, False), **recipe.backbone_args)
    payload = {
        "backbone": recipe.backbone,
        "objective": recipe.objective,
        "num_classes": num_classes,
        "train_images": int(len(train_labels)),
        "val_images": int(len(val_labels)),
        "metrics": metrics,
        "history": history,
        "images_per_second": (total_steps - first_step) * recipe.batch_size / max(training_seconds, 1e-9),
        "seconds": round(time.perf_counter() - started, 2),
        "provenance": provenance(identity, STAGE),
    }
    write_json(report, payload)
    shutil.rmtree(state.state_dir, ignore_errors=True)
    LOG.info("wrote %s: %s (%.1f images/s)", output, metrics, payload["images_per_second"])
    return payload


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True, help="pool folder (train.npz, val.npz)")
    parser.add_argument("--output", type=Path, required=True, help="weights to write (.safetensors)")
    parser.add_argument("--report", type=Path, required=True, help="report to write (.json)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    run(lambda: pretrain(args.config, args.pool, args.output, args.report))


if __name__ == "__main__":
    main()
