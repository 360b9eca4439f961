"""Resume state for long training stages.

Snakemake deletes a rule's declared outputs before it runs, so resume state lives in an undeclared
sibling folder (``<output dir>/_state/last.pt``). It holds model, optimiser, scheduler, step and RNG
states plus the hash of the configuration and the code fingerprint (``wsss_core.utils.provenance``) that made
it; a state made under another configuration or by other code is discarded rather than resumed, with a
log line saying why (resuming it would mix two code versions in one model while its provenance names
only the newer). In multi-process training rank 0 writes the file with every rank's RNG
state (``rng_per_rank``) and every rank resumes from it (:func:`rank_rng_state`).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss_core.utils.atomic import save_torch

LOG = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """States of every random generator a training step may draw from."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rank_rng_state(saved: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """The RNG state rank ``rank`` resumes with: its own when the checkpoint was written by a run with
    the same number of processes, else rank 0's (the config hash covers the process count, so this
    happens only for hand-made states)."""
    per_rank = saved.get("rng_per_rank")
    if per_rank and len(per_rank) == world_size:
        return per_rank[rank]
    if world_size > 1:
        LOG.warning("resume state has no RNG state per rank for %d processes; all ranks take rank 0's", world_size)
    return saved["rng"]


class ResumeState:
    """Reads and writes ``last.pt`` in a state folder, atomically."""

    def __init__(self, state_dir: str | Path, config_hash: str, code_fingerprint: str | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "last.pt"
        self.config_hash = config_hash
        self.code_fingerprint = code_fingerprint

    def save(
        self,
        *,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        history: list[dict[str, float]],
        extra: dict[str, Any] | None = None,
        rng_per_rank: list[dict[str, Any]] | None = None,
    ) -> None:
        """Write the state atomically. ``rng_per_rank`` (multi-process training) holds every rank's RNG
        state in rank order; ``rng`` is then rank 0's, so one-process readers still find theirs."""
        payload = {
            "config_hash": self.config_hash,
            "code_fingerprint": self.code_fingerprint,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_per_rank[0] if rng_per_rank else rng_state(),
            "rng_per_rank": rng_per_rank,
            "history": history,
            "extra": extra or {},
        }
        save_torch(payload, self.path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it belongs to another configuration or code."""
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as error:  # a truncated file cannot exist (atomic writes), but be safe
            LOG.warning("ignoring unreadable resume state %s: %s", self.path, error)
            return None
        if payload.get("config_hash") != self.config_hash:
            LOG.info("resume state %s was made with another configuration; starting afresh", self.path)
            return None
        if self.code_fingerprint is not None and payload.get("code_fingerprint") != self.code_fingerprint:
            LOG.warning(
                "resume state %s was made by other code (fingerprint %s, now %s): starting afresh rather than "
                "mixing two code versions in one model", self.path, payload.get("code_fingerprint"),
                self.code_fingerprint,
            )
            self.clear()  # once: the stage loads the state again in the loop
            return None
        return payload

    def clear(self) -> None:
        if self.path.exists():
            self.path.unlink()
