"""Stage ``pretrain_pool``: write the synthetic pretraining pool (the ImageNet stand-in's images).

    python -m wsss_core.stages.pretrain_pool --config JSON --output results/synth/pretrain_pool

Reads ``stage`` = ``pretraining.pool`` (:class:`wsss_core.data.synth_pretrain.PoolParams`) and writes
``train.npz``, ``val.npz`` and ``classes.json`` into ``--output``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from wsss_core.data.synth_pretrain import PoolParams, write_pool
from wsss_core.stages._cli import run, stage_parser

LOG = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="pool folder to write")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes drawing the images (run-time: not in --config; default stage.workers)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    def launch() -> None:
        started = time.perf_counter()
        stage = dict(args.config.get("stage") or {})
        if args.workers is not None:
            stage["workers"] = args.workers
        params = PoolParams.load(stage, "pretraining.pool")
        summary = write_pool(args.output, params)
        LOG.info("wrote %s: %s images in %.1f s", args.output, summary["counts"], time.perf_counter() - started)

    run(launch)


if __name__ == "__main__":
    main()
