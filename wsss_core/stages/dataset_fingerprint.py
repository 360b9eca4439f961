"""Stage ``dataset_fingerprint``: what an on-disk dataset holds, as a file the dataset's stages depend on.

    python -m wsss_core.stages.dataset_fingerprint --config JSON --output results/{ds}/dataset.fingerprint.json

Reads ``dataset``. Writes the fingerprint's digest, its file count and problems, the changes since the
previous fingerprint, and provenance (see :mod:`wsss_core.data.fingerprint`). The full per-file table is
kept in ``.dataset.fingerprint.previous.json`` next to the output (Snakemake deletes a rule's output
before it runs it, so the previous table must live outside it); from it the log names what changed.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsss_core.data.fingerprint import describe_changes, fingerprint
from wsss_core.stages._cli import run, stage_parser
from wsss_core.utils.atomic import write_json
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.dataset_fingerprint"


def previous_table_path(output: Path) -> Path:
    return output.with_name(f".{output.stem}.previous.json")


def write_fingerprint(config: Mapping[str, Any], output: Path) -> dict[str, Any]:
    """Fingerprint ``config["dataset"]``, log what changed since the previous one, write ``output``."""
    dataset = config["dataset"]
    current = fingerprint(dataset)
    previous_path = previous_table_path(output)
    try:
        previous = json.loads(previous_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        previous = None
    name = dataset.get("name", "?")
    if previous is None:
        changes = []
        LOG.info("dataset '%s': first fingerprint, %d files, digest %s", name, len(current["files"]), current["digest"])
    elif previous.get("digest") == current["digest"]:
        changes = []
        LOG.info("dataset '%s' is unchanged since the previous fingerprint (digest %s)", name, current["digest"])
    else:
        changes = describe_changes(previous, current)
        LOG.info("dataset '%s' changed since the previous fingerprint (%s → %s): %s", name, previous.get("digest"),
                 current["digest"], "; ".join(changes) or "file order or metadata only")
    for problem in current["problems"]:
        LOG.warning("dataset '%s': %s", name, problem)
    summary = {
        "dataset": name,
        "digest": current["digest"],
        "num_files": sum(value is not None for value in current["files"].values()),
        "problems": current["problems"],
        "changes": changes,
        "provenance": provenance(dict(config), STAGE),
    }
    write_json(previous_path, current)
    write_json(output, summary)
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="fingerprint JSON to write")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    run(lambda: write_fingerprint(args.config, args.output))


if __name__ == "__main__":
    main()
