"""Atomic writes: a failed writer leaves nothing, and leftovers of a killed one are swept."""

from __future__ import annotations

import json

import pytest

from wsss_core.utils.atomic import atomic_path, write_json


def test_failed_writer_leaves_neither_target_nor_temporary(tmp_path):
    target = tmp_path / "scores.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_target_and_sweeps_a_killed_writers_partial(tmp_path):
    target = tmp_path / "cams.h5"
    stale = tmp_path / ".cams.h5.abc123.partial"  # what a SIGKILLed writer leaves behind
    stale.write_text("half-written")
    other = tmp_path / ".other.h5.abc123.partial"  # another target's writer: not ours to touch
    other.write_text("in use")
    write_json(target, {"miou": 0.5})
    assert json.loads(target.read_text()) == {"miou": 0.5}
    assert not stale.exists() and other.exists()
