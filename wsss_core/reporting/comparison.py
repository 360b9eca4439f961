"""Method comparisons over repeated seeds: mean ± std of seed, pseudo-mask and final mIoU per run, and
whether the difference to the baseline is distinguishable from seed-to-seed variation.

The rule for "distinguishable" (stated under every table): the difference of the means exceeds twice its
standard error, ``|Δ| > 2 · sqrt(s₁²/n₁ + s₂²/n₂)`` with the sample standard deviations of the runs' seeds;
with fewer than two seeds per run nothing is called distinguishable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LEVELS = (("classification_map", "classification mAP (best head)"), ("seed_miou", "seed mIoU"),
          ("mask_miou", "mask mIoU"), ("miou", "final mIoU"))


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of one level over seeds (None where a level is absent)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        if self.n < 2:
            return math.nan
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (self.n - 1))


def spread(results: Sequence[Mapping[str, object]], key: str) -> Spread | None:
    values = tuple(float(r[key]) for r in results if r.get(key) is not None)  # type: ignore[arg-type]
    return Spread(values) if values else None


def verdict(baseline: Spread | None, method: Spread | None) -> tuple[float | None, str]:
    """(difference of means, "distinguishable" / "not distinguishable" / "—")."""
    if baseline is None or method is None:
        return None, "—"
    difference = method.mean - baseline.mean
    if baseline.n < 2 or method.n < 2:
        return difference, "not distinguishable (one seed)"
    error = math.sqrt(baseline.std**2 / baseline.n + method.std**2 / method.n)
    return difference, "distinguishable" if abs(difference) > 2 * error else "not distinguishable"


def _cell(value: Spread | None, scale: float) -> str:
    if value is None:
        return ""
    if value.n < 2:
        return f"{scale * value.mean:.1f} (n=1)"
    return f"{scale * value.mean:.1f} ± {scale * value.std:.1f}"


def comparison_table(title: str, runs: Mapping[str, Sequence[Mapping[str, object]]], scale: float = 100.0) -> str:
    """Markdown: one row per run (the first is the baseline), then the difference of each other run."""
    names = list(runs)
    spreads = {name: {key: spread(results, key) for key, _ in LEVELS} for name, results in runs.items()}
    levels = [(key, label) for key, label in LEVELS if any(spreads[name][key] for name in names)]
    lines = [f"### {title}", "", "| run | seeds | " + " | ".join(label for _, label in levels) + " |",
             "|:---|---:|" + "---:|" * len(levels)]
    for name in names:
        seeds = max((s.n for s in spreads[name].values() if s is not None), default=0)
        lines.append(f"| {name} | {seeds} | " + " | ".join(_cell(spreads[name][key], scale) for key, _ in levels) + " |")
    baseline = names[0]
    for name in names[1:]:
        cells = []
        for key, _ in levels:
            difference, word = verdict(spreads[baseline][key], spreads[name][key])
            cells.append("" if difference is None else f"{scale * difference:+.1f} ({word})")
        lines.append(f"| {name} − {baseline} | | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


RULE = ("Mean ± sample standard deviation over seeds. A difference is called distinguishable when "
        "|Δ| > 2·sqrt(s₁²/n₁ + s₂²/n₂); otherwise it is within seed-to-seed variation.")
