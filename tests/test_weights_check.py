"""``python -m wsss_core.weights check`` on a missing, a corrupt and a good file (tiny backbones)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import timm
import torch

from wsss_core.models.backbones import create_backbone
from safetensors.torch import save_file

from wsss_core.weights.__main__ import main
from wsss_core.weights.check import check_weights, render
from wsss_core.weights.manifest import MANIFEST, WeightEntry

# The tiny variant registered as resnet_synth (a narrow timm resnet18, one block per stage).
TINY = WeightEntry("tiny", "resnet_synth", "test backbone", None, "https://example.invalid/tiny.safetensors",
                   None, None, "test file")
WRONG_PREFIX = WeightEntry("deit_small", "deit_small", "DeiT-S", "deit_small_patch16_224.fb_in1k",
                           "https://example.invalid/x.pth", "deit_small_patch16_224-cd65a155.pth", "cd65a155", "test")


def tiny_file(path: Path) -> str:
    """A real resnet_synth state dict as safetensors; returns its sha256."""
    torch.manual_seed(0)
    model = create_backbone("resnet_synth", None)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_corrupt_and_good_files_are_told_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # results/ paths are relative to the working directory: none built here
    good = tmp_path / "good.safetensors"
    digest = tiny_file(good)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # an interrupted download
    weights = {
        "files": {"tiny": str(good), "tiny_corrupt": str(corrupt), "tiny_missing": str(tmp_path / "absent.safetensors"),
                  "synth_pretrained": "results/synth/pretrained/resnet_synth.safetensors", "unused": None},
        "sha256": {"tiny": digest, "tiny_corrupt": digest},
    }
    manifest = {"tiny": TINY, "tiny_corrupt": TINY, "tiny_missing": TINY}
    reports = {report.key: report for report in check_weights(weights, manifest)}
    assert reports["tiny"].status == "ok"
    assert "sha256 matches weights.sha256.tiny" in reports["tiny"].lines[0]
    assert "loads into resnet_synth" in reports["tiny"].lines[1]
    assert reports["tiny_corrupt"].status == "corrupt"
    assert "differs from weights.sha256.tiny_corrupt" in reports["tiny_corrupt"].lines[0]
    assert "does not load into resnet_synth" in reports["tiny_corrupt"].lines[1]
    assert reports["tiny_missing"].status == "missing"
    assert "download https://example.invalid/tiny.safetensors" in reports["tiny_missing"].lines[0]
    assert reports["synth_pretrained"].status == "to_build"
    assert "run `snakemake --cores 2 results/synth/pretrained/resnet_synth.safetensors`" in reports["synth_pretrained"].lines[0]
    assert reports["unused"].status == "unset"
    text = render(list(reports.values()))
    assert text.splitlines()[-1].startswith("1 of 5 ok; to fix: tiny_corrupt, tiny_missing; built by the workflow")


def test_a_file_of_another_backbone_does_not_load_and_a_published_prefix_is_checked(tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    model = timm.create_model("resnet18", layers=(1, 1, 1, 1), num_classes=0, stem_width=16, stem_type="deep")
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(other))
    report = check_weights({"files": {"tiny": str(other)}}, {"tiny": TINY})[0]
    assert report.status == "unloadable" and "no published hash (test file); pin this one" in report.lines[0]
    named = tmp_path / "deit_small_patch16_224-cd65a155.pth"
    named.write_bytes(b"an HTML error page, not weights")
    report = check_weights({"files": {"deit_small": str(named)}}, {"deit_small": WRONG_PREFIX}, load=False)[0]
    assert report.status == "corrupt" and "does not start with the published cd65a155" in report.lines[0]


def test_every_config_key_has_a_manifest_entry_and_the_cli_exit_code(tmp_path: Path, capsys) -> None:
    import yaml

    repository = Path(__file__).resolve().parents[1]
    files = yaml.safe_load((repository / "config.yaml").read_text())["weights"]["files"]
    assert [key for key in files if key not in MANIFEST and not str(files[key]).startswith("results/")] == []
    good = tmp_path / "good.safetensors"
    tiny_file(good)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"weights": {"files": {"resnet_synth": str(good)}}}))
    # not in the manifest and not a workflow output: exists, hashed, but no backbone to verify it with
    assert main(["check", "--config", str(config)]) == 0
    output = capsys.readouterr().out
    assert "UNVERIFIED resnet_synth" in output and "no backbone is known for 'resnet_synth'" in output
    config.write_text(yaml.safe_dump({"weights": {"files": {"deit_small": str(tmp_path / "nothing.pth")}}}))
    assert main(["check", "--config", str(config)]) == 1
    assert "MISSING    deit_small" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["nonsense"])
