"""``python -m wsss_core.weights check|manifest``: verify the local weight files of config.yaml.

    python -m wsss_core.weights check                        # config.yaml in the current folder
    python -m wsss_core.weights check --config config.yaml my_overrides.yaml --keys deit_small resnet101
    python -m wsss_core.weights check --no-load              # existence and hashes only (fast)
    python -m wsss_core.weights manifest                     # what each key is, its source and hash

``check`` exits 1 when a file is missing (and not built by the workflow), corrupt or does not load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from wsss_core.errors import InputError
from wsss_core.weights.check import check_weights, render, render_manifest


def weights_config(paths: list[Path]) -> dict[str, Any]:
    """``weights`` of the config files, later files overriding earlier ones key by key (as Snakemake does)."""
    merged: dict[str, Any] = {"files": {}, "sha256": {}}
    for path in paths:
        if not path.is_file():
            raise InputError(f"config file '{path}' does not exist; pass --config path/to/config.yaml")
        block = (yaml.safe_load(path.read_text()) or {}).get("weights") or {}
        for name in ("files", "sha256"):
            merged[name].update(block.get(name) or {})
        merged.update({key: value for key, value in block.items() if key not in ("files", "sha256")})
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsss_core.weights", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="verify every weights.files key (exists, sha256, loads)")
    check.add_argument("--config", nargs="+", type=Path, default=[Path("config.yaml")], help="config file(s)")
    check.add_argument("--keys", nargs="+", default=None, help="only these keys")
    check.add_argument("--no-load", action="store_true", help="skip loading into the backbones")
    commands.add_parser("manifest", help="print the manifest as a Markdown table")
    args = parser.parse_args(argv)
    if args.command == "manifest":
        print(render_manifest())
        return 0
    try:
        reports = check_weights(weights_config(args.config), load=not args.no_load, keys=args.keys)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(render(reports))
    return 0 if all(report.status in ("ok", "to_build", "unset", "unverified") for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
