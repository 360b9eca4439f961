"""The run-stage benchmark table: each artefact's recorded images/s beside its job's wall time and peak RSS."""

from __future__ import annotations

from pathlib import Path

import h5py
import torch

from wsss_core.benchmarks import run_stages


def test_table_pairs_artefacts_with_their_benchmarks(tmp_path: Path, capsys) -> None:
    run = tmp_path / "results" / "synth" / "demo"
    (run / "train").mkdir(parents=True)
    (run / "masks" / "irn").mkdir(parents=True)
    (run / "masks" / "crf").mkdir(parents=True)
    torch.save({"images_per_second": 21.5, "model": {}}, run / "train" / "model.pt")
    for path, speed in ((run / "masks" / "irn" / "masks.h5", 6.0), (run / "masks" / "crf" / "masks.h5", 40.0)):
        with h5py.File(path, "w") as store:
            store.attrs["images_per_second"] = speed
    benchmarks = tmp_path / "benchmarks" / "synth" / "demo"
    benchmarks.mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\n"
    (benchmarks / "train_method.tsv").write_text(header + "276.4\t0:04:36\t2542.1\t9000\n")
    (benchmarks / "refine_random_walk_irn.tsv").write_text(header + "108.0\t0:01:48\t985.0\t5000\n")

    run_stages.main([str(run), "--benchmarks", str(tmp_path / "benchmarks")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| demo | train_method | `train/model.pt` | 21.5 | 276 | 2542 |"
    assert lines[3] == "| demo | refine_crf | `masks/crf/masks.h5` | 40.0 |  |  |"  # no benchmark file: blank
    assert lines[4] == "| demo | refine_random_walk | `masks/irn/masks.h5` | 6.0 | 108 | 985 |"
    assert len(lines) == 5  # crf masks are not listed a second time as a random walk
