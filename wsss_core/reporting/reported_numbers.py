"""The papers' reported numbers, as data, each with the table it comes from.

The summary tables print these beside the measured numbers, always labelled *reported*: they were
obtained with the papers' full schedules, ImageNet weights and the segmentation networks named in
``setting``, which a run of this project may not match (e.g. the synthetic default, or DeepLab-V2
where the paper used DeepLab-V1 ResNet-38).

Metrics (mIoU in percent):

* ``seed``: CAM seeds, scored on VOC *train* (1,464 images) unless ``split`` says otherwise;
* ``mask``: pseudo-masks after refinement (multi-stage) or the network's own pseudo labels
  (single-stage), on VOC *train*;
* ``val`` / ``test``: the final segmentation on VOC val / test (online server) or COCO 2014 val.

Keys are registered method names (``cti``, ``mctformer``, ...) or the config's variant names of a
paper's ablation rows (``cti_bcam``, ...). A variant that is not listed here gets no reported number,
because its overrides make it a different model from the paper's.

Sources are the papers in ``/work/shared/seeds`` (file names below) and the project's reference notes
(``/work/shared/reference/*.md`` section "Reported numbers"), which cite the public READMEs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

METRICS: tuple[str, ...] = ("seed", "mask", "val", "test")
DATASETS: tuple[str, ...] = ("voc", "coco")

_CTI = "CTI, CVPR 2024 (seeds/000_e2c76a51187638e9.txt)"
_MCC = "MCC (seeds/001_57c7402d7911dcc5.txt)"
_ECA = "ECA (seeds/002_f317d7abdba994c9.txt)"
_SWT = "SWTformer (seeds/003_639d6513bbe59c5d.txt)"
_PCM = "ViT-PCM supplement (seeds/004_f17c9da13fc89dbd.txt)"


@dataclass(frozen=True)
class ReportedNumber:
    """One number a paper reports: what was measured, how, and where it is printed."""

    key: str  # method or variant name
    dataset: str  # voc | coco (the label space)
    metric: str  # seed | mask | val | test
    miou: float  # percent
    split: str  # the split it was scored on
    setting: str  # backbone / refinement / segmentation network behind the number
    source: str  # paper and table
    precision: float | None = None  # percent, where the paper reports it (CTI Table 1)
    recall: float | None = None


def _n(key: str, dataset: str, metric: str, miou: float, split: str, setting: str, source: str,
       precision: float | None = None, recall: float | None = None) -> ReportedNumber:
    return ReportedNumber(key, dataset, metric, miou, split, setting, source, precision, recall)


REPORTED_NUMBERS: tuple[ReportedNumber, ...] = (
    # CTI: Tables 1, 3, 4, 5 of the paper.
    _n("cti", "voc", "seed", 69.5, "train", "DeiT-S", f"{_CTI} Tables 1(d) and 3", 80.0, 84.0),
    _n("cti", "voc", "mask", 73.7, "train", "IRN", f"{_CTI} Table 3"),
    _n("cti", "voc", "val", 74.1, "val", "DeepLab-V1 ResNet-38", f"{_CTI} Table 4"),
    _n("cti", "voc", "test", 73.2, "test", "DeepLab-V1 ResNet-38", f"{_CTI} Table 4"),
    _n("cti", "coco", "val", 45.4, "val", "DeepLab-V2 ResNet-101", f"{_CTI} Table 5"),
    # CTI ablation rows (Table 1): the variants of config.yaml that reproduce them.
    _n("cti_bcam", "voc", "seed", 67.6, "train", "DeiT-S, + L_bcam", f"{_CTI} Table 1(a)", 78.7, 82.6),
    _n("cti_bcam_icti", "voc", "seed", 68.7, "train", "DeiT-S, + L_bcam + I-CTI", f"{_CTI} Table 1(b)", 79.0, 83.7),
    _n("cti_bcam_ccti", "voc", "seed", 69.0, "train", "DeiT-S, + L_bcam + C-CTI", f"{_CTI} Table 1(c)", 78.9, 84.7),
    # MCTformer-V2 (CVPR 2022), as listed by CTI; CTI's own re-implementation scores 64.7 (Table 1).
    _n("mctformer", "voc", "seed", 61.7, "train", "DeiT-S", f"{_CTI} Table 3 (citing MCTformer)"),
    _n("mctformer", "voc", "mask", 69.1, "train", "PSA", f"{_CTI} Table 3 (citing MCTformer)"),
    _n("mctformer", "voc", "val", 71.9, "val", "DeepLab-V1 ResNet-38", f"{_CTI} Table 4 (citing MCTformer)"),
    _n("mctformer", "voc", "test", 71.6, "test", "DeepLab-V1 ResNet-38", f"{_CTI} Table 4 (citing MCTformer)"),
    _n("mctformer", "coco", "val", 42.0, "val", "DeepLab-V1 ResNet-38", f"{_CTI} Table 5 (citing MCTformer)"),
    # MCC: Tables I and II.
    _n("mcc", "voc", "mask", 73.0, "train", "DeiT-B, own pseudo labels", f"{_MCC} Table II"),
    _n("mcc", "voc", "val", 70.3, "val", "DeiT-B decoder, MS + CRF", f"{_MCC} Tables I and III"),
    _n("mcc", "voc", "test", 71.2, "test", "DeiT-B decoder, MS + CRF", f"{_MCC} Table I"),
    _n("mcc", "coco", "val", 42.3, "val", "DeiT-B decoder, MS + CRF", f"{_MCC} Table I"),
    # ToCo (CVPR 2023) and AFA (CVPR 2022), as listed by MCC.
    _n("toco", "voc", "mask", 72.2, "train", "DeiT-B, own pseudo labels", f"{_MCC} Table II (citing ToCo)"),
    _n("toco", "voc", "val", 69.8, "val", "DeiT-B decoder, MS + CRF", f"{_MCC} Table I (citing ToCo)"),
    _n("toco", "voc", "test", 70.5, "test", "DeiT-B decoder, MS + CRF", f"{_MCC} Table I (citing ToCo)"),
    _n("toco", "coco", "val", 41.3, "val", "DeiT-B decoder, MS + CRF", f"{_MCC} Table I (citing ToCo)"),
    _n("afa", "voc", "mask", 68.7, "train", "MiT-B1, own pseudo labels", f"{_MCC} Table II (citing AFA)"),
    _n("afa", "voc", "val", 66.0, "val", "MiT-B1 decoder, MS + CRF", f"{_MCC} Table I; {_ECA} Table 1"),
    _n("afa", "voc", "test", 66.3, "test", "MiT-B1 decoder, MS + CRF", f"{_MCC} Table I; {_ECA} Table 1"),
    _n("afa", "coco", "val", 38.9, "val", "MiT-B1 decoder, MS + CRF", f"{_MCC} Table I; {_ECA} Table 1"),
    # ECA: Tables 1 and 4 (its CAM number is on VOC *val*, not train).
    _n("eca", "voc", "seed", 69.1, "val", "MiT-B1 + DINO ViT-S/8, CAM without CRF", f"{_ECA} Table 4"),
    _n("eca", "voc", "val", 70.9, "val", "MiT-B1 decoder, MS + CRF", f"{_ECA} Table 1"),
    _n("eca", "voc", "test", 71.4, "test", "MiT-B1 decoder, MS + CRF", f"{_ECA} Table 1"),
    _n("eca", "coco", "val", 42.9, "val", "MiT-B1 decoder, MS + CRF", f"{_ECA} Table 1"),
    # SWTformer: seeds only (Tables 2 and 3); the paper gives no mask, val or test numbers.
    _n("swtformer_v1", "voc", "seed", 49.84, "train", "Swin-T", f"{_SWT} Tables 2 and 3"),
    _n("swtformer", "voc", "seed", 55.16, "train", "Swin-T, + GSC + CCL (V2)", f"{_SWT} Tables 2 and 3"),
    # ViT-PCM: final DeepLab-V2 numbers from the supplement; BPM pseudo-mask quality as cited by MCC.
    _n("vitpcm", "voc", "mask", 71.4, "train", "ViT-B/16 BPM", f"{_MCC} Table II (citing ViT-PCM)"),
    _n("vitpcm", "voc", "val", 70.3, "val", "DeepLab-V2 ResNet-101, MS + CRF", f"{_PCM} Table S1"),
    _n("vitpcm", "voc", "test", 70.9, "test", "DeepLab-V2 ResNet-101, MS + CRF", f"{_PCM} Table S1"),
    _n("vitpcm", "coco", "val", 45.0, "val", "DeepLab-V2 ResNet-101, MS + CRF", f"{_PCM} Table S2"),
)


def reported_numbers(
    run: str, method: str, dataset: str, table: Iterable[ReportedNumber] = REPORTED_NUMBERS
) -> dict[str, ReportedNumber]:
    """The reported numbers (by metric) for a run of the summary on a label space (``voc``/``coco``).

    A run named after a listed key (a method, or a paper's ablation variant) gets that key's numbers;
    a variant that is not listed gets none, even when its base ``method`` is, since it differs from
    the paper's model.
    """
    key = run if any(number.key == run for number in table) else None
    if key is None and run == method:
        key = method
    return {number.metric: number for number in table if number.key == key and number.dataset == dataset}


def check_table(table: Iterable[ReportedNumber] = REPORTED_NUMBERS) -> None:
    """Raise ValueError when an entry is malformed or (key, dataset, metric) appears twice."""
    seen: set[tuple[str, str, str]] = set()
    for number in table:
        identity = (number.key, number.dataset, number.metric)
        if identity in seen:
            raise ValueError(f"reported number {identity} is listed twice")
        seen.add(identity)
        if number.dataset not in DATASETS or number.metric not in METRICS:
            raise ValueError(f"reported number {identity}: dataset must be one of {DATASETS}, metric one of {METRICS}")
        for name in ("miou", "precision", "recall"):
            value = getattr(number, name)
            if value is not None and not 0.0 < value <= 100.0:
                raise ValueError(f"reported number {identity}: {name} {value} is not a percentage")
        if not number.source or not number.setting or not number.split:
            raise ValueError(f"reported number {identity} lacks its source, setting or split")

