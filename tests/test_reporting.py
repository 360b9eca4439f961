"""Results reporting: reported numbers table, summary rows from hand-made score files, and figures."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_core.data.classes import voc_palette
from wsss_core.io.seed_store import MaskStoreWriter, SeedStoreWriter
from wsss_core.reporting import figures
from wsss_core.reporting.reported_numbers import REPORTED_NUMBERS, ReportedNumber, check_table, reported_numbers
from wsss_core.reporting.summary import SummaryInputError, benchmark_seconds, read_rows, stage_seconds
from wsss_core.stages import figures as figures_stage
from wsss_core.stages import summary as summary_stage

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------ reported numbers
def test_reported_table_is_well_formed_and_matches_the_papers():
    check_table()
    table = {(n.key, n.dataset, n.metric): n.miou for n in REPORTED_NUMBERS}
    # values read off the papers' tables (CTI Tables 1/3/4/5, MCC Table I, ECA Table 1, SWT Table 2, PCM S1/S2)
    assert table[("cti", "voc", "seed")] == 69.5
    assert table[("cti", "voc", "mask")] == 73.7
    assert table[("cti", "voc", "val")] == 74.1
    assert table[("cti", "voc", "test")] == 73.2
    assert table[("cti", "coco", "val")] == 45.4
    assert table[("mcc", "voc", "val")] == 70.3 and table[("mcc", "coco", "val")] == 42.3
    assert table[("eca", "voc", "test")] == 71.4 and table[("eca", "coco", "val")] == 42.9
    assert table[("swtformer", "voc", "seed")] == 55.16 and table[("swtformer_v1", "voc", "seed")] == 49.84
    assert table[("vitpcm", "voc", "val")] == 70.3 and table[("vitpcm", "coco", "val")] == 45.0
    assert all(number.source for number in REPORTED_NUMBERS)


def test_reported_numbers_lookup_for_methods_and_variants():
    assert set(reported_numbers("cti", "cti", "voc")) == {"seed", "mask", "val", "test"}
    assert set(reported_numbers("cti", "cti", "coco")) == {"val"}
    ablation = reported_numbers("cti_bcam_icti", "cti", "voc")
    assert set(ablation) == {"seed"} and ablation["seed"].miou == 68.7 and ablation["seed"].recall == 83.7
    assert reported_numbers("cti_my_sweep", "cti", "voc") == {}  # an unlisted variant is not the paper's model
    assert reported_numbers("cti", "cti", "synth") == {}


def test_check_table_rejects_duplicates_and_bad_entries():
    entry = ReportedNumber("m", "voc", "val", 50.0, "val", "x", "paper")
    with pytest.raises(ValueError, match="twice"):
        check_table([entry, entry])
    with pytest.raises(ValueError, match="metric"):
        check_table([ReportedNumber("m", "voc", "mask_val", 50.0, "val", "x", "paper")])
    with pytest.raises(ValueError, match="percentage"):
        check_table([ReportedNumber("m", "voc", "val", 0.5e3, "val", "x", "paper")])


# -------------------------------------------------------------------------------------------- summary
def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _scores(miou: float, precision: float, recall: float) -> dict:
    return {"miou": miou, "iou": {"background": miou, "cat": miou}, "mean_precision": precision, "mean_recall": recall}


def _benchmark(path: Path, *seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["s\th:m:s\tmax_rss"] + [f"{value}\t0:00:01\t10.0" for value in seconds]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def run_dirs(tmp_path: Path) -> dict:
    """Two runs on a 'voc' label space: cti (multi-stage crf → deeplab_v2, plus irn → deeplab_v1) and
    mcc (own decoder), with benchmarks."""
    results, benchmarks = tmp_path / "results" / "voc", tmp_path / "benchmarks" / "voc"
    cti = results / "cti"
    _write(cti / "seeds" / "eval.json", {"best_threshold": 0.35, "best": _scores(0.60, 0.70, 0.80),
                                          "provenance": {"config": {"method": {"name": "cti"}}}})
    _write(cti / "masks" / "crf" / "eval.json", _scores(0.65, 0.75, 0.85))
    _write(cti / "masks" / "irn" / "eval.json", _scores(0.68, 0.76, 0.86))
    _write(cti / "seg" / "crf.deeplab_v2" / "miou.json", _scores(0.66, 0.77, 0.81))
    _write(cti / "seg" / "irn.deeplab_v1" / "miou.json", _scores(0.70, 0.78, 0.82))
    _write(cti / "miou.json", {"miou": 0.66, "pipeline": {"route": "multi_stage", "refine": "crf",
                                                         "segmentation": "deeplab_v2"}})
    mcc = results / "mcc"
    _write(mcc / "seeds" / "eval.json", {"best_threshold": None, "best": _scores(0.50, 0.60, 0.70)})
    _write(mcc / "decoder" / "miou.json", _scores(0.62, 0.71, 0.79))
    _write(mcc / "miou.json", {"miou": 0.62, "pipeline": {"route": "own_decoder"}})
    _benchmark(benchmarks / "cti" / "train_method.tsv", 100.0, 300.0)  # mean 200
    _benchmark(benchmarks / "cti" / "export_seeds.tsv", 10.0)
    _benchmark(benchmarks / "cti" / "refine_crf.tsv", 5.0)
    _benchmark(benchmarks / "cti" / "train_affinity_irn.tsv", 40.0)
    _benchmark(benchmarks / "cti" / "refine_irn.tsv", 2.0)
    _benchmark(benchmarks / "cti" / "train_segmentation_crf.deeplab_v2.tsv", 50.0)
    _benchmark(benchmarks / "cti" / "infer_segmentation_crf.deeplab_v2.tsv", 7.0)
    _benchmark(benchmarks / "cti" / "evaluate_seeds.tsv", 1.0)
    _benchmark(benchmarks / "cti" / "evaluate_masks_crf.tsv", 2.0)
    _benchmark(benchmarks / "cti" / "evaluate_segmentation_seg" / "crf.deeplab_v2.tsv", 3.0)
    _benchmark(benchmarks / "mcc" / "train_method.tsv", 80.0)
    _benchmark(benchmarks / "mcc" / "infer_decoder.tsv", 9.0)
    return {"cti": cti, "mcc": mcc, "benchmarks": benchmarks, "root": tmp_path}


def test_benchmark_seconds_is_the_mean_of_repeats(tmp_path):
    _benchmark(tmp_path / "a.tsv", 1.5, 2.5, 5.0)
    assert benchmark_seconds(tmp_path / "a.tsv") == pytest.approx(3.0)
    assert benchmark_seconds(tmp_path / "absent.tsv") is None


def test_stage_seconds_per_route(run_dirs):
    crf = stage_seconds(run_dirs["benchmarks"] / "cti", "multi_stage", "crf", "deeplab_v2")
    assert crf == {"train": 200.0, "seeds": 10.0, "refine": 5.0, "segmentation": 50.0, "inference": 7.0,
                   "evaluation": 6.0}
    irn = stage_seconds(run_dirs["benchmarks"] / "cti", "multi_stage", "irn", "deeplab_v1")
    assert irn["refine"] == pytest.approx(42.0)  # refine_irn + train_affinity_irn
    assert irn["segmentation"] is None and irn["evaluation"] == 1.0
    decoder = stage_seconds(run_dirs["benchmarks"] / "mcc", "own_decoder")
    assert decoder == {"train": 80.0, "seeds": None, "refine": None, "segmentation": None, "inference": 9.0,
                       "evaluation": None}
    # an end-to-end run's decoder time does not leak into its extra multi-stage routes, and vice versa
    _benchmark(run_dirs["benchmarks"] / "mcc" / "infer_segmentation_crf.deeplab_v2.tsv", 4.0)
    assert stage_seconds(run_dirs["benchmarks"] / "mcc", "multi_stage", "crf", "deeplab_v2")["inference"] == 4.0
    assert stage_seconds(run_dirs["benchmarks"] / "mcc", "own_decoder")["inference"] == 9.0
    # sharded export and inference: the shards and their merge add up
    for index, seconds in enumerate((3.0, 5.0)):
        _benchmark(run_dirs["benchmarks"] / "mcc" / f"export_seeds.{index}of2.tsv", seconds)
        _benchmark(run_dirs["benchmarks"] / "mcc" / f"infer_decoder.{index}of2.tsv", 10 * seconds)
    _benchmark(run_dirs["benchmarks"] / "mcc" / "merge_seed_shards.tsv", 0.5)
    _benchmark(run_dirs["benchmarks"] / "mcc" / "merge_prediction_shards_decoder.tsv", 1.0)
    sharded = stage_seconds(run_dirs["benchmarks"] / "mcc", "own_decoder")
    assert sharded["seeds"] == pytest.approx(8.5) and sharded["inference"] == pytest.approx(9.0 + 80.0 + 1.0)


def test_read_rows_multi_stage_with_extra_route(run_dirs):
    rows = read_rows(run_dirs["cti"], dataset="voc", label_space="voc", extra_routes=["irn.deeplab_v1"],
                     benchmarks=run_dirs["benchmarks"] / "cti")
    assert [(row.refine, row.segmentation) for row in rows] == [("crf", "deeplab_v2"), ("irn", "deeplab_v1")]
    first, second = rows
    assert first.method == "cti" and first.route == "multi_stage" and first.seed_threshold == 0.35
    assert (first.seed.miou, first.seed.precision, first.seed.recall) == (0.60, 0.70, 0.80)
    assert (first.mask.miou, second.mask.miou) == (0.65, 0.68)
    assert (first.final.miou, second.final.miou) == (0.66, 0.70)
    assert first.total_seconds == pytest.approx(200 + 10 + 5 + 50 + 7 + 6)
    assert first.reported["seed"].miou == 69.5 and first.reported["val"].miou == 74.1
    assert first.pipeline_label == "crf → deeplab_v2"


def test_read_rows_own_decoder_and_errors(run_dirs, tmp_path):
    (row,) = read_rows(run_dirs["mcc"], dataset="voc", label_space="voc", method="mcc")
    assert row.route == "own_decoder" and row.mask.miou is None and row.final.miou == 0.62
    assert row.seed_threshold is None and set(row.reported) == {"mask", "val", "test"}
    with pytest.raises(SummaryInputError, match="irn.*eval.json"):
        read_rows(run_dirs["mcc"], dataset="voc", label_space="voc", extra_routes=["irn.deeplab_v1"])
    with pytest.raises(SummaryInputError, match="REFINE.NETWORK"):
        read_rows(run_dirs["cti"], dataset="voc", label_space="voc", extra_routes=["irn"])
    with pytest.raises(SummaryInputError, match="miou.json"):
        read_rows(tmp_path / "nothing", dataset="voc", label_space="voc")


def test_summary_stage_writes_markdown_and_csv(run_dirs):
    output = run_dirs["root"] / "results" / "voc" / "summary.md"
    # mcc's classifier is near chance (best 40.0 < halfway 55.0): flagged; cti has no classification.json (older run)
    (run_dirs["mcc"] / "train").mkdir(exist_ok=True)
    (run_dirs["mcc"] / "train" / "classification.json").write_text(json.dumps(
        {"chance_map": 0.1, "heads": {"cls": {"map": 0.4}, "aux": {"map": 0.3}}}))
    config = {"dataset": {"name": "voc", "classes": "voc"}, "stage": {"routes": {"cti": ["irn.deeplab_v1"]}}}
    summary_stage.main(["--config", json.dumps(config), "--runs", str(run_dirs["cti"]), str(run_dirs["mcc"]),
                        "--benchmarks", str(run_dirs["benchmarks"]), "--output", str(output)])
    with open(output.with_suffix(".csv")) as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["run"], row["refine"], row["segmentation"]) for row in rows] == [
        ("cti", "crf", "deeplab_v2"), ("cti", "irn", "deeplab_v1"), ("mcc", "", "")]
    assert float(rows[0]["seed_miou"]) == pytest.approx(60.0) and float(rows[1]["final_miou"]) == pytest.approx(70.0)
    assert float(rows[2]["final_recall"]) == pytest.approx(79.0) and rows[2]["mask_miou"] == ""
    assert float(rows[0]["seconds_train"]) == 200.0 and float(rows[2]["seconds_inference"]) == 9.0
    assert float(rows[0]["reported_val_miou"]) == 74.1 and "Table 4" in rows[0]["reported_val_source"]
    markdown = output.read_text()
    assert "| cti | cti | crf → deeplab_v2 |  | 60.0 | 70.0 / 80.0 | 0.35 |  |  | 65.0 | 75.0 / 85.0 | 66.0 |" in markdown
    assert "| mcc ⚠ | mcc | own decoder | cls 40.0, aux 30.0 |" in markdown
    assert "- ⚠ mcc: classification mAP on the score split cls 40.0, aux 30.0 (chance 10.0)" in markdown
    assert (rows[2]["classification_map_best"], rows[2]["classification_map_chance"]) == ("40.0000", "10.0000")
    assert rows[0]["classification_map_best"] == ""
    assert "| cti | held-out | not run (stages.evaluate_seeds.held_out is null) | score split |" in markdown
    assert "reported val" in markdown and "not measured here" in markdown
    page = output.with_suffix(".html").read_text()
    assert "<td class='number reported'>74.1</td>" in page and "<td class='number'>66.0</td>" in page


def test_routes_whose_stages_took_quality_away_are_flagged(run_dirs, capsys):
    cti, mcc = run_dirs["cti"], run_dirs["mcc"]
    # cti: seeds 60.0; crf masks 65.0 → final 62.9 (2.1 below: flagged); irn masks 55.0 (below the seeds:
    # flagged) → final 70.0; mcc: its own pseudo-labels 70.0 → decoder 62.0 (8.0 below: flagged)
    _write(cti / "seg" / "crf.deeplab_v2" / "miou.json", _scores(0.629, 0.77, 0.81))
    _write(cti / "masks" / "irn" / "eval.json", _scores(0.55, 0.76, 0.86))
    _write(mcc / "masks" / "own" / "eval.json", _scores(0.70, 0.80, 0.75))
    crf, irn = read_rows(cti, dataset="voc", label_space="voc", extra_routes=["irn.deeplab_v1"])
    assert list(crf.route_flags) == ["segmentation_below_masks"] and crf.flags == {}
    assert "62.9 is 2.1 points below the pseudo-masks it was trained on (65.0)" in crf.route_flags[
        "segmentation_below_masks"]
    assert list(irn.route_flags) == ["refinement_lowered_seeds"]
    assert irn.route_flags["refinement_lowered_seeds"].startswith("irn lowered the seeds from 60.0 to 55.0 mIoU")
    (own,) = read_rows(mcc, dataset="voc", label_space="voc")
    assert "8.0 points below the method's own pseudo-labels (70.0)" in own.route_flags["segmentation_below_masks"]
    # exactly at the margins: mask = seed, final = mask - 2 points: not flagged
    _write(cti / "masks" / "irn" / "eval.json", _scores(0.60, 0.76, 0.86))
    _write(cti / "seg" / "crf.deeplab_v2" / "miou.json", _scores(0.63, 0.77, 0.81))
    assert [row.route_flags for row in read_rows(cti, dataset="voc", label_space="voc",
                                                 extra_routes=["irn.deeplab_v1"])] == [{}, {}]
    # the summary marks the row, says what to look at (Markdown, HTML, log) and names the flag in the CSV
    output = run_dirs["root"] / "results" / "voc" / "summary.md"
    config = {"dataset": {"name": "voc", "classes": "voc"}, "stage": {}}
    summary_stage.main(["--config", json.dumps(config), "--runs", str(cti), str(mcc), "--output", str(output)])
    markdown = output.read_text()
    assert "| cti | cti | crf → deeplab_v2 |" in markdown and "| mcc ⚠ | mcc | own decoder |" in markdown
    note = "⚠ mcc (own decoder): the final mIoU 62.0 is 8.0 points below the method's own pseudo-labels (70.0)"
    assert f"- {note}" in markdown and html.escape(note) in output.with_suffix(".html").read_text()
    assert f"WARNING wsss_core.stages.summary: {note}" in capsys.readouterr().err
    with open(output.with_suffix(".csv")) as stream:
        flags = {row["run"]: row["flags"] for row in csv.DictReader(stream)}
    assert flags == {"cti": "", "mcc": "segmentation_below_masks"}


def test_summary_stage_without_reported_numbers_for_synth(run_dirs, capsys):
    output = run_dirs["root"] / "synth_summary.md"
    config = {"dataset": {"name": "synth", "classes": "synth"}, "stage": {}}
    summary_stage.main(["--config", json.dumps(config), "--runs", str(run_dirs["mcc"]), "--output", str(output)])
    assert "reported" not in output.read_text()
    with pytest.raises(SystemExit):
        summary_stage.main(["--config", json.dumps({**config, "stage": {"routes": {"other": ["crf.x"]}}}),
                            "--runs", str(run_dirs["mcc"]), "--output", str(output)])
    assert "stage.routes" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- figures
def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _has_colour(pixels: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool(np.all(pixels == np.array(colour, dtype=np.uint8), axis=-1).any())


def test_sample_grid_png_size_and_colours(tmp_path):
    truth = np.zeros((24, 32), dtype=np.uint8)
    truth[4:16, 6:20] = 1
    truth[3, 6:20] = 255
    prediction = np.zeros_like(truth)
    prediction[10:20, 10:30] = 2
    rows = [
        figures.SampleRow("a (train)", np.full((24, 32, 3), 90, np.uint8), truth, seed=truth, pseudo_mask=truth),
        figures.SampleRow("b (val)", np.full((24, 32, 3), 90, np.uint8), truth, prediction=prediction),
    ]
    size = figures.sample_grid(rows, ["cat", "dog"], tmp_path / "grid.png", title="t")
    pixels = _png(tmp_path / "grid.png")
    # 5 tiles of 1.8 in + 1.2 in of row labels at 100 dpi; 2 tiles high + title + one legend row
    assert size == (1020, round((2 * 1.8 + 0.25 + 0.3 + 0.4) * 100))
    assert pixels.shape[:2] == (size[1], size[0])
    assert _has_colour(pixels, (128, 0, 0)) and _has_colour(pixels, (0, 128, 0))  # cat, dog (VOC palette)
    assert _has_colour(pixels, tuple(voc_palette()[255]))  # the ignore band


def test_class_iou_chart_sizes(tmp_path):
    iou = {"a": {"background": 0.9, "cat": 0.5, "dog": None}, "b": {"background": 0.8, "cat": 0.6, "dog": 0.1}}
    assert figures.class_iou_chart(iou, tmp_path / "bars.png", title="t") == (1400, 417)
    assert _png(tmp_path / "bars.png").shape[:2] == (417, 1400)
    many = {"a": {f"class{index}": index / 81 for index in range(81)}}
    # four panels, one legend row above the first, no title
    assert figures.class_iou_chart(many, tmp_path / "coco.png") == (1400, round((4 * 3.6 + 0.1 + 0.22) * 100))
    assert len(np.unique(_png(tmp_path / "coco.png").reshape(-1, 3), axis=0)) > 10


def test_training_curves_and_loss_terms(tmp_path):
    history = [{"step": step, "epoch": 0, "loss": 2.0 / step, "cls": 1.0 / step, "lr": 1e-3, "seconds": step,
                **({"seed_miou": 0.4} if step == 20 else {})} for step in (10, 20, 30)]
    assert figures.loss_terms(history) == ["loss", "cls"]
    assert figures.training_curves(history, tmp_path / "curves.png", seed_miou=0.5) == (1380, 380)
    assert _png(tmp_path / "curves.png").shape[:2] == (380, 1380)
    with_segmentation = figures.training_curves(history, tmp_path / "four.png", segmentation_history=history,
                                                diagnostics={"cls"})
    assert with_segmentation == (1840, 380) and _png(tmp_path / "four.png").shape[:2] == (380, 1840)
    with pytest.raises(ValueError, match="empty"):
        figures.training_curves([], tmp_path / "none.png")


# ---------------------------------------------------------------------------------- figures stage
CLASS_NAMES = ["cat", "dog"]
OBJECTS = {"img_a": 1, "img_b": 2, "img_c": 1}  # img_a, img_b: train; img_c: val


def _truth(image_id: str) -> np.ndarray:
    mask = np.zeros((24, 32), dtype=np.uint8)
    mask[6:18, 8:24] = OBJECTS[image_id]
    return mask


@pytest.fixture()
def dataset(tmp_path: Path) -> dict:
    root = tmp_path / "voc"
    for folder in ("JPEGImages", "SegmentationClassAug", "Annotations", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    for image_id, class_id in OBJECTS.items():
        image = np.full((24, 32, 3), 50, dtype=np.uint8)
        image[_truth(image_id) > 0] = (220, 180, 40)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        png = Image.fromarray(_truth(image_id), mode="P")
        png.putpalette(voc_palette().reshape(-1).tolist())
        png.save(root / "SegmentationClassAug" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><object><name>{CLASS_NAMES[class_id - 1]}</name></object></annotation>")
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text("img_a\nimg_b\n")
    (lists / "train.txt").write_text("img_a\nimg_b\n")
    (lists / "val.txt").write_text("img_c\n")
    return {"name": "tiny", "format": "voc", "root": str(root), "class_names": CLASS_NAMES, "cls_labels": None,
            "splits": {name: f"ImageSets/Segmentation/{name}.txt" for name in ("train_aug", "train", "val")},
            "roles": {"train": "train_aug", "score": "train", "evaluate": "val"}}


@pytest.fixture()
def stores(tmp_path: Path) -> dict:
    seeds = tmp_path / "seeds.h5"
    with SeedStoreWriter(seeds, method="cti", num_classes=2) as writer:
        for image_id in ("img_a", "img_b"):
            cam = np.where(_truth(image_id) > 0, 0.8, 0.2).astype(np.float32)[None]
            writer.add(image_id, cam, np.array([OBJECTS[image_id]]))
    masks, predictions = tmp_path / "masks.h5", tmp_path / "predictions.h5"
    with MaskStoreWriter(masks, num_classes=2) as writer:
        for image_id in ("img_a", "img_b"):
            writer.add(image_id, _truth(image_id))
    with MaskStoreWriter(predictions, num_classes=2) as writer:
        writer.add("img_c", _truth("img_c"))
    seed_eval = tmp_path / "eval.json"
    seed_eval.write_text(json.dumps({"best_threshold": 0.5, "best": {"miou": 0.75, "iou": {"background": 0.9}}}))
    return {"seeds": seeds, "masks": masks, "predictions": predictions, "seed_eval": seed_eval}


def test_sample_rows_pick_cells_by_split(dataset, stores):
    config = {"dataset": dataset, "stage": {"num_samples": 1}}
    rows, names = figures_stage.sample_rows(config, stores["seeds"], stores["seed_eval"], stores["masks"],
                                            stores["predictions"])
    assert names == CLASS_NAMES and [row.label for row in rows] == ["img_a\n(train)", "img_c\n(val)"]
    train_row, val_row = rows
    # cam 0.8 inside the object beats the 0.5 background threshold; 0.2 outside loses to it
    np.testing.assert_array_equal(train_row.seed, _truth("img_a"))
    np.testing.assert_array_equal(train_row.pseudo_mask, _truth("img_a"))
    assert train_row.prediction is None and val_row.seed is None and val_row.pseudo_mask is None
    np.testing.assert_array_equal(val_row.prediction, _truth("img_c"))
    chosen = figures_stage.sample_ids({"dataset": dataset, "stage": {"sample_ids": ["img_c", "img_b"]}},
                                      figures_stage.open_dataset(dataset))
    assert chosen == [("img_c", "val"), ("img_b", "train")]


def test_figures_stage_subcommands(dataset, stores, tmp_path, capsys):
    config = json.dumps({"dataset": dataset, "run": "cti", "stage": {"num_samples": 2}})
    figures_stage.main(["samples", "--config", config, "--seeds", str(stores["seeds"]), "--seed-eval",
                        str(stores["seed_eval"]), "--masks", str(stores["masks"]), "--predictions",
                        str(stores["predictions"]), "--output", str(tmp_path / "samples.png")])
    assert _png(tmp_path / "samples.png").shape[1] == 1020
    scores = tmp_path / "miou.json"
    scores.write_text(json.dumps({"miou": 0.5, "iou": {"background": 0.9, "cat": 0.4, "dog": None}}))
    figures_stage.main(["class-iou", "--config", config, "--scores", f"cti={scores}", f"other={stores['seed_eval']}",
                        "--output", str(tmp_path / "bars.png")])
    assert _png(tmp_path / "bars.png").shape[:2] == (417, 1400)
    model = tmp_path / "model.pt"
    torch.save({"history": [{"step": 1, "epoch": 0, "loss": 1.0, "lr": 0.1, "seconds": 1.0},
                            {"step": 2, "epoch": 0, "loss": 0.5, "lr": 0.1, "seconds": 2.0}],
                "model": {"w": torch.zeros(1)}}, model)
    figures_stage.main(["training", "--config", config, "--model", str(model), "--seed-eval", str(stores["seed_eval"]),
                        "--output", str(tmp_path / "curves.png")])
    assert _png(tmp_path / "curves.png").shape[:2] == (380, 1380)
    with pytest.raises(SystemExit):
        figures_stage.main(["samples", "--config", json.dumps({"dataset": dataset, "stage": {"sample_ids": ["nope"]}}),
                            "--seeds", str(stores["seeds"]), "--seed-eval", str(stores["seed_eval"]),
                            "--output", str(tmp_path / "bad.png")])
    assert "stage.sample_ids" in capsys.readouterr().err
    # the stage keys are ReportingStage's: a bad value is one line naming the key, before any store is read
    with pytest.raises(SystemExit):
        figures_stage.main(["class-iou", "--config", json.dumps({"dataset": dataset, "stage": {"classes_per_panel": 0}}),
                            "--scores", f"cti={scores}", "--output", str(tmp_path / "bad.png")])
    assert "stage.classes_per_panel = 0: must be greater than 0" in capsys.readouterr().err


def test_figure_index_embeds_the_summary_and_links_figures_relative_to_the_page(tmp_path):
    from wsss_core.stages import figure_index

    dataset_dir = tmp_path / "results" / "synth"
    (dataset_dir / "figures").mkdir(parents=True)
    (dataset_dir / "cti" / "figures").mkdir(parents=True)
    summary = dataset_dir / "summary.md"
    summary.write_text("# Results on synth\n\n| run |\n|:---|\n| cti |\n\n<!-- provenance: x -->\n")
    chart = dataset_dir / "figures" / "class_iou.png"
    grid = dataset_dir / "cti" / "figures" / "samples.png"
    for figure in (chart, grid):
        figure.write_bytes(b"\x89PNG")
    output = dataset_dir / "figures" / "index.md"
    figure_index.main(["--config", '{"dataset": {"name": "synth"}}', "--summary", str(summary),
                       "--figures", str(grid), str(chart), "--output", str(output)])
    page = output.read_text()
    assert page.startswith("# synth: results and figures\n\n## Results on synth")
    assert "| cti |" in page and "<!-- provenance: x" not in page
    assert page.index("## all runs") < page.index("## cti")  # the cross-run chart first
    assert "![all runs class_iou](class_iou.png)" in page and "![cti samples](../cti/figures/samples.png)" in page
    grid.unlink()
    with pytest.raises(SystemExit):
        figure_index.main(["--config", "{}", "--summary", str(summary), "--figures", str(grid),
                           "--output", str(tmp_path / "other.md")])
    assert not (tmp_path / "other.md").exists()


def test_summary_shows_both_threshold_protocols_and_names_every_split(run_dirs):
    """A seed evaluation with the held-out protocol: both thresholds side by side, splits in the headers."""
    seeds = json.loads((run_dirs["cti"] / "seeds" / "eval.json").read_text())
    seeds.update(split="train", held_out={"tune_split": "train_aug", "tune_images": "train_aug minus train",
                                          "num_tune_images": 9118, "report_split": "train", "threshold": 0.41,
                                          "miou": 0.58, "mean_precision": 0.72, "mean_recall": 0.74})
    _write(run_dirs["cti"] / "seeds" / "eval.json", seeds)
    for path, split in ((run_dirs["cti"] / "masks" / "crf" / "eval.json", "train"),
                        (run_dirs["cti"] / "seg" / "crf.deeplab_v2" / "miou.json", "val")):
        _write(path, {**json.loads(path.read_text()), "split": split})
    output = run_dirs["root"] / "results" / "voc" / "summary.md"
    config = {"dataset": {"name": "voc", "classes": "voc", "roles": {"score": "train", "evaluate": "val"}}, "stage": {}}
    summary_stage.main(["--config", json.dumps(config), "--runs", str(run_dirs["cti"]), "--output", str(output)])
    markdown = output.read_text()
    assert ("| run | method | pipeline | classification mAP [train] | seed mIoU [train] | seed P / R | bg thr. | seed mIoU, held-out thr. [train] "
            "| held-out bg thr. | mask mIoU [train] | mask P / R | final mIoU [val] |") in markdown
    assert "| cti | cti | crf → deeplab_v2 |  | 60.0 | 70.0 / 80.0 | 0.35 | 58.0 | 0.41 | 65.0 |" in markdown
    assert "| cti | oracle (as the papers) | train | train | 0.35 | 60.0 | 70.0 / 80.0 |" in markdown
    assert "| cti | held-out | train_aug minus train (9118 images) | train | 0.41 | 58.0 | 72.0 / 74.0 |" in markdown
    assert "| split |" in markdown  # the reported numbers' table names theirs
    with open(output.with_suffix(".csv")) as stream:
        (row,) = list(csv.DictReader(stream))
    assert (row["seed_split"], row["mask_split"], row["final_split"]) == ("train", "train", "val")
    assert float(row["seed_heldout_miou"]) == pytest.approx(58.0) and float(row["seed_heldout_threshold"]) == 0.41


def test_summary_shows_the_seed_localisation_beside_its_chance_levels(run_dirs):
    """The seed evaluation's threshold-free localisation becomes a table; a run without it (mcc) has no row."""
    seeds = json.loads((run_dirs["cti"] / "seeds" / "eval.json").read_text())
    seeds["diagnostics"] = {"flags": {}, "localisation": {
        "pairs": 212, "pointing_accuracy": 0.81, "pointing_chance": 0.18, "energy_inside": 0.35,
        "energy_gain": 0.35 / 0.18, "energy_on_objects": 0.62, "objects_chance": 0.29}}
    _write(run_dirs["cti"] / "seeds" / "eval.json", seeds)
    output = run_dirs["root"] / "results" / "voc" / "summary.md"
    config = {"dataset": {"name": "voc", "classes": "voc"}, "stage": {}}
    summary_stage.main(["--config", json.dumps(config), "--runs", str(run_dirs["cti"]), str(run_dirs["mcc"]),
                        "--output", str(output)])
    markdown = output.read_text()
    assert "## Seed localisation, threshold-free" in markdown
    assert "| cti | 212 | 81.0 (18.0) | 35.0 (18.0) | 62.0 (29.0) | 1.94 |" in markdown
    assert "| mcc | " not in markdown.split("## Seed localisation")[1].split("##")[0]
    assert "Seed localisation" in output.with_suffix(".html").read_text()


def test_summary_shows_where_the_object_pixels_go_per_level(run_dirs):
    """Each score file's diagnostics.errors becomes a row per level (the seeds once per run); files without
    them (cti's irn route, mcc) add none."""
    def errors(correct, missed, confused, absent=None):
        return {"correct": correct, "missed": missed, "confused": confused, "false_foreground": 0.2,
                "foreground_iou": 0.6, **({} if absent is None else {"names_absent_class": absent})}

    seeds = json.loads((run_dirs["cti"] / "seeds" / "eval.json").read_text())
    seeds["diagnostics"] = {"flags": {}, "errors": errors(0.5, 0.45, 0.05)}
    _write(run_dirs["cti"] / "seeds" / "eval.json", seeds)
    for path, values in ((run_dirs["cti"] / "masks" / "crf" / "eval.json", errors(0.7, 0.25, 0.05, 0.0)),
                         (run_dirs["cti"] / "seg" / "crf.deeplab_v2" / "miou.json", errors(0.6, 0.2, 0.2, 0.45))):
        payload = json.loads(path.read_text())
        payload["diagnostics"] = {"errors": values}
        _write(path, payload)
    output = run_dirs["root"] / "results" / "voc" / "summary.md"
    config = {"dataset": {"name": "voc", "classes": "voc"}, "stage": {"routes": {"cti": ["irn.deeplab_v1"]}}}
    summary_stage.main(["--config", json.dumps(config), "--runs", str(run_dirs["cti"]), str(run_dirs["mcc"]),
                        "--output", str(output)])
    section = output.read_text().split("## Where the object pixels go")[1].split("\n## ")[0]
    assert "| cti |  | seed | 50.0 | 45.0 | 5.0 | 20.0 | 60.0 |  |" in section
    assert "| cti | crf → deeplab_v2 | mask | 70.0 | 25.0 | 5.0 | 20.0 | 60.0 | 0.0 |" in section
    assert "| cti | crf → deeplab_v2 | final | 60.0 | 20.0 | 20.0 | 20.0 | 60.0 | 45.0 |" in section
    assert section.count("| seed |") == 1 and "irn" not in section and "| mcc |" not in section
    assert "Where the object pixels go" in output.with_suffix(".html").read_text()


def test_a_network_that_misnames_objects_is_flagged_as_such(run_dirs):
    """segmentation_below_masks names misnaming when the network gives another class to more than 5 points more
    of the object pixels than its labels, and the budget otherwise."""
    mcc = run_dirs["mcc"]

    def with_errors(scores, confused, absent=None):
        return {**scores, "diagnostics": {"errors": {"correct": 0.5, "missed": 0.5 - confused, "confused": confused,
                                                     **({} if absent is None else {"names_absent_class": absent})}}}

    _write(mcc / "masks" / "own" / "eval.json", with_errors(_scores(0.70, 0.80, 0.75), 0.05, 0.0))
    _write(mcc / "decoder" / "miou.json", with_errors(_scores(0.62, 0.71, 0.79), 0.20, 0.8))
    (row,) = read_rows(mcc, dataset="voc", label_space="voc")
    assert row.route_flags["segmentation_below_masks"] == (
        "the final mIoU 62.0 is 8.0 points below the method's own pseudo-labels (70.0): it gives 20.0 % of the object "
        "pixels another class against 5.0 % in its labels, and 80.0 % of the images a class they do not contain: it "
        "misnames objects its labels named from the image labels — the backbone's recognition more than its budget "
        "(scripts/diagnostics/oracle_classes.py scores it with the image's classes)")
    _write(mcc / "decoder" / "miou.json", with_errors(_scores(0.62, 0.71, 0.79), 0.10))  # 5 points more: the budget
    (row,) = read_rows(mcc, dataset="voc", label_space="voc")
    assert "has not learned its labels; look at its training curve" in row.route_flags["segmentation_below_masks"]
