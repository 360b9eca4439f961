"""The ablation-table stage: reads seed-evaluation JSONs and writes the paper's Table 1 layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from wsss_core.errors import ConfigError
from wsss_core.stages import ablation_table
from wsss_core.stages.ablation_table import EvaluationFileError, build_rows, parse_row_argument


def write_eval(path: Path, miou: float, precision: float, recall: float, threshold: float) -> Path:
    payload = {
        "best_threshold": threshold,
        "best": {"miou": miou, "mean_precision": precision, "mean_recall": recall, "iou": {"background": 0.8}},
        "sweep": [],
        "provenance": {"stage": "wsss_core.stages.evaluate_seeds"},
    }
    path.write_text(json.dumps(payload))
    return path


STAGE = {
    "title": "Table 1",
    "components": ["L_bcam", "L_i-cti", "L_c-cti"],
    "rows": {
        "Baseline": {"run": "mctformer", "components": [], "paper": {"miou": 64.7}},
        "(a)": {"run": "cti_bcam", "components": ["L_bcam"], "paper": {"miou": 67.6}},
        "(d)": {"run": "cti", "components": ["L_bcam", "L_i-cti", "L_c-cti"], "paper": {"miou": 69.5}},
    },
}


def test_stage_writes_markdown_and_csv(tmp_path: Path) -> None:
    base = write_eval(tmp_path / "base.json", 0.647, 0.752, 0.818, 0.40)
    bcam = write_eval(tmp_path / "a.json", 0.676, 0.787, 0.826, 0.41)
    full = write_eval(tmp_path / "d.json", 0.695, 0.800, 0.840, 0.43)
    output = tmp_path / "out" / "ablation.md"
    config = {"stage": STAGE, "seed": 0}
    ablation_table.main(
        ["--config", json.dumps(config), "--rows", f"Baseline={base}", f"(a)={bcam}", f"(d)={full}",
         "--output", str(output)]
    )
    markdown = output.read_text()
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0] == "| variant | L_bcam | L_i-cti | L_c-cti | P (%) | R (%) | mIoU (%) | bg threshold | paper mIoU (%) |"
    assert lines[1] == "| Baseline |  |  |  | 75.2 | 81.8 | 64.7 | 0.40 | 64.7 |"
    assert lines[2] == "| (a) | ✓ |  |  | 78.7 | 82.6 | 67.6 | 0.41 | 67.6 |"
    # the best precision, recall and mIoU (all from row (d)) are bold
    assert lines[3] == "| (d) | ✓ | ✓ | ✓ | **80.0** | **84.0** | **69.5** | 0.43 | 69.5 |"
    assert markdown.startswith("## Table 1")
    assert "provenance" in markdown

    with open(output.with_suffix(".csv")) as stream:
        table = list(csv.reader(stream))
    assert table[0][-1] == "source"
    assert table[2][:8] == ["(a)", "1", "0", "0", "78.7", "82.6", "67.6", "0.41"]
    assert table[3][-1] == str(full)


def test_row_argument_parsing() -> None:
    assert parse_row_argument("L1 3=a/b=c.json") == ("L1 3", Path("a/b=c.json"))
    with pytest.raises(ConfigError, match="LABEL=path"):
        parse_row_argument("no-separator.json")


def test_missing_file_and_missing_key_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(EvaluationFileError, match="missing.json"):
        build_rows([f"x={tmp_path / 'missing.json'}"], {})
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"best_threshold": 0.4, "best": {"miou": 0.5}}))
    with pytest.raises(EvaluationFileError, match="best.mean_precision"):
        build_rows([f"x={broken}"], {})


def test_percent_inputs_need_the_scale_switch(tmp_path: Path) -> None:
    source = write_eval(tmp_path / "percent.json", 69.5, 80.0, 84.0, 0.43)
    with pytest.raises(ConfigError, match="percent_scale"):
        build_rows([f"x={source}"], {})
    (row,) = build_rows([f"x={source}"], {"percent_scale": 1})
    assert (row.precision, row.recall, row.miou) == (80.0, 84.0, 69.5)


def test_seeds_with_their_own_background_have_no_threshold(tmp_path: Path) -> None:
    source = tmp_path / "bg.json"
    source.write_text(json.dumps({"best_threshold": None, "best": {"miou": 0.5, "mean_precision": 0.6, "mean_recall": 0.7}}))
    (row,) = build_rows([f"x={source}"], {})
    assert row.threshold is None
    markdown = ablation_table.render_markdown([row], [], None)
    assert "| x | **60.0** | **70.0** | **50.0** | – |" in markdown


def test_duplicate_labels_and_unknown_components_are_rejected(tmp_path: Path) -> None:
    source = write_eval(tmp_path / "e.json", 0.6, 0.7, 0.8, 0.4)
    with pytest.raises(ConfigError, match="twice"):
        build_rows([f"x={source}", f"x={source}"], {})
    with pytest.raises(ConfigError, match="L_cti"):
        build_rows([f"x={source}"], {"components": ["L_bcam"], "rows": {"x": {"run": "cti", "components": ["L_cti"]}}})


def test_stage_reports_bad_input_as_one_line_exit(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        ablation_table.main(
            ["--config", "{}", "--rows", f"x={tmp_path / 'none.json'}", "--output", str(tmp_path / "t.md")]
        )
    assert raised.value.code == 1
    assert not (tmp_path / "t.md").exists()


def write_final(path: Path, seeds: Path, miou: float, mask_miou: float | None) -> Path:
    """A final_result summary naming its seed evaluation."""
    payload = {"miou": miou, "seed_miou": 0.1, "mask_miou": mask_miou, "sources": {"seeds": str(seeds)}}
    path.write_text(json.dumps(payload))
    return path


def test_rows_from_final_results_add_pseudo_mask_and_final_columns(tmp_path: Path) -> None:
    base_seeds = write_eval(tmp_path / "base_seeds.json", 0.570, 0.60, 0.70, 0.50)
    full_seeds = write_eval(tmp_path / "full_seeds.json", 0.736, 0.75, 0.80, 0.45)
    base = write_final(tmp_path / "base.json", base_seeds, 0.557, 0.600)
    full = write_final(tmp_path / "full.json", full_seeds, 0.696, None)  # a run without pseudo-mask scores
    stage = {"components": ["L_aff"], "rows": {"Baseline": {"run": "mcc_baseline", "components": []},
                                                "MCC": {"run": "mcc", "components": ["L_aff"]}}}
    output = tmp_path / "ablation.md"
    ablation_table.main(["--config", json.dumps({"stage": stage}), "--rows", f"Baseline={base}", f"MCC={full}",
                         "--output", str(output)])
    lines = [line for line in output.read_text().splitlines() if line.startswith("| ")]
    assert lines[0] == ("| variant | L_aff | seed P (%) | seed R (%) | seed mIoU (%) | bg threshold | "
                        "pseudo-mask mIoU (%) | final mIoU (%) |")
    assert lines[1] == "| Baseline |  | 60.0 | 70.0 | 57.0 | 0.50 | **60.0** | 55.7 |"
    assert lines[2] == "| MCC | ✓ | **75.0** | **80.0** | **73.6** | 0.45 |  | **69.6** |"
    with open(output.with_suffix(".csv")) as stream:
        table = list(csv.reader(stream))
    assert table[1][-3:] == ["60.0", "55.7", str(base)]
    broken = write_final(tmp_path / "broken.json", tmp_path / "absent.json", 0.5, 0.5)
    with pytest.raises(EvaluationFileError, match="absent.json"):
        build_rows([f"X={broken}"], {})


def test_the_stage_reads_its_block_as_its_type(tmp_path: Path) -> None:
    """``stage`` is ``AblationTable``: a value out of range is one ConfigError naming the key, before any
    row is read; a row's components come from the typed row."""
    source = write_eval(tmp_path / "e.json", 0.6, 0.7, 0.8, 0.4)
    with pytest.raises(ConfigError, match=r"stage\.percent_scale = 0: must be greater than 0"):
        build_rows([f"x={tmp_path / 'missing.json'}"], {"percent_scale": 0})
    (row,) = build_rows([f"x={source}"], {"components": ["L_bcam"], "rows": {"x": {"run": "cti", "components": ["L_bcam"]}}})
    assert row.components == frozenset({"L_bcam"}) and row.miou == pytest.approx(60.0)
