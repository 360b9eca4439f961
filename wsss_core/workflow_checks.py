"""Checks the Snakefile makes before building the DAG, on what Snakemake itself would get wrong silently.

* **Profiles.** ``snakemake --profile profiles/slurm`` also loads ``profiles/default`` as the *workflow*
  profile, and the workflow profile wins: its local ``resources: gpu: 1`` cap then makes every GPU job
  ask the cluster for one GPU (while a training stage starts ``compute.<dataset>.gpu`` workers) and run
  one at a time. :func:`profile_conflict` finds that combination in the command line, so the workflow
  stops with the right spelling instead (``--workflow-profile profiles/slurm``).
* **config.yaml against its schema**, in one line (:func:`schema_problem`): Snakemake's own message
  appends the whole schema and the whole config (over a thousand lines) to the one line that matters.
* **What the schema cannot see** (:func:`config_problem`): every method, variant and pipeline resolved
  for every dataset and checked against its typed settings (``wsss_core.settings``: each method's type
  beside its code, ``wsss_core.stages.settings`` for ``stages:``, ``wsss_core.pretraining.settings`` for
  ``pretraining:``), so a misspelt key, a wrong type or an out-of-range value anywhere (method block,
  dataset preset, variant, stage section, pretraining recipe) stops
  ``snakemake -n`` before any job, in one line naming the key path.
* **Target paths** (:func:`target_problem`): a method, variant, refinement or network that the config
  does not know matches no rule, and Snakemake says only "No rule to produce"; this lists the known ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from wsss_core import artefacts as paths
from wsss_core import workflow_config as resolve
from wsss_core.errors import ConfigError

LOCAL_EXECUTORS = frozenset({"local", "dryrun", "touch"})
DEFAULT_WORKFLOW_PROFILE = Path("profiles") / "default"


def _option_values(argv: Sequence[str], *names: str) -> list[str]:
    """Values given to an option (``--opt a b``, ``--opt=a``), in order; several values after one flag
    count until the next token that starts with ``-``."""
    values: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        flag, equals, inline = token.partition("=")
        if flag in names:
            if equals:
                values.append(inline)
            else:
                index += 1
                while index < len(argv) and not argv[index].startswith("-"):
                    values.append(argv[index])
                    index += 1
                continue
        if token == "--":
            break
        index += 1
    return values


def _profile_settings(profile: str | Path, workdir: Path) -> tuple[Path, dict[str, Any]] | None:
    """(folder, settings) of a profile given by path or name, as Snakemake finds it; None if not found."""
    from snakemake.cli import get_profile_dir

    previous = Path.cwd()
    try:
        os.chdir(workdir)
        found = get_profile_dir(str(profile))
    finally:
        os.chdir(previous)
    if found is None:
        return None
    folder, config_file = found
    settings = yaml.safe_load(Path(workdir, config_file).read_text()) or {}
    return Path(workdir, folder), settings if isinstance(settings, dict) else {}


def _profiles(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    profiles = _option_values(argv, "--profile")
    if not profiles and environ.get("SNAKEMAKE_PROFILE"):
        profiles = [environ["SNAKEMAKE_PROFILE"]]
    return profiles


def _remote_executor(argv: Sequence[str], environ: Mapping[str, str], workdir: Path) -> tuple[str, str] | None:
    """(where it is chosen, executor) when the command line or a ``--profile`` sends jobs to a cluster."""
    executors = [(f"--executor {value}", value) for value in _option_values(argv, "--executor", "-e")]
    for profile in _profiles(argv, environ):
        found = _profile_settings(profile, workdir) if profile != "none" else None
        if found and found[1].get("executor"):
            executors.append((f"profile {profile}", str(found[1]["executor"])))
    remote = [(where, executor) for where, executor in executors if executor not in LOCAL_EXECUTORS]
    return remote[-1] if remote else None


def device_problem(config: Mapping[str, Any], argv: Sequence[str], environ: Mapping[str, str], workdir: Path,
                   cuda_devices: int | None = None) -> str | None:
    """The message for ``device: cuda`` (top level, or a stage section's run-time ``device``) when the jobs
    run on this machine and it has no such CUDA device, else None. Jobs sent to a cluster are not checked
    (the submitting host need not have the GPUs). ``cuda_devices``: the device count (default: torch's)."""
    from wsss_core.runtime import _stage_sections

    if _remote_executor(argv, environ, workdir) is not None:
        return None
    wanted = [("device", config.get("device"))]
    for path, node in _stage_sections(config.get("stages") or {}).items():
        wanted.append((f"stages.{path}.device", node.get("device")))
    for key, value in wanted:
        if not isinstance(value, str) or not value.startswith("cuda"):
            continue
        if cuda_devices is None:
            import torch

            cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(value.partition(":")[2] or 0)
        if index >= cuda_devices:
            seen = f"{cuda_devices} CUDA device(s) are visible" if cuda_devices else "no CUDA device is visible"
            return (f"config.yaml: {key} is '{value}', but the jobs run on this machine and {seen}: use "
                    f"device: auto (CUDA when visible, else CPU) or cpu, or send the jobs to a cluster with GPUs "
                    f"(--workflow-profile profiles/slurm)")
    return None


def profile_conflict(argv: Sequence[str], environ: Mapping[str, str], workdir: Path, snakefile_dir: Path) -> str | None:
    """The message for a cluster run whose GPU requests a local workflow profile would cap, else None.

    ``argv`` is Snakemake's command line; the workflow profile is ``--workflow-profile`` or, without it,
    ``profiles/default`` next to the working directory or the Snakefile (Snakemake's own search)."""
    argv = list(argv)
    if _option_values(argv, "--resources", "--res"):
        return None  # a cap given on the command line replaces the profile's
    chosen = _option_values(argv, "--workflow-profile")
    if chosen and chosen[-1] == "none":
        return None
    candidates = [Path(chosen[-1])] if chosen else [workdir / DEFAULT_WORKFLOW_PROFILE,
                                                     snakefile_dir / DEFAULT_WORKFLOW_PROFILE]
    workflow_profile = next(
        (found for found in (_profile_settings(path, workdir) for path in candidates) if found), None
    )
    if workflow_profile is None:
        return None
    folder, settings = workflow_profile
    cap = (settings.get("resources") or {}).get("gpu") if isinstance(settings.get("resources"), dict) else None
    if cap is None or str(settings.get("executor", "local")) not in LOCAL_EXECUTORS:
        return None
    profiles = _profiles(argv, environ)
    remote = _remote_executor(argv, environ, workdir)
    if remote is None:
        return None
    where, executor = remote
    relative = os.path.relpath(folder, workdir)
    fix = (f"use --workflow-profile {profiles[-1]} instead of --profile {profiles[-1]}"
           if where.startswith("profile ") else "use --workflow-profile profiles/slurm")
    return (
        f"{where} runs jobs on a cluster (executor {executor}), but Snakemake also loads the workflow profile "
        f"{relative}, whose local cap 'resources: gpu: {cap}' wins: every GPU job would ask for at most {cap} GPU "
        f"(a training stage still starts compute.<dataset>.gpu workers) and GPU jobs would run one at a time. "
        f"{fix.capitalize()} (or add --workflow-profile none)"
    )


# ------------------------------------------------------------------------------------ config.yaml
def _key_path(parts: Sequence[Any]) -> str:
    return ".".join(str(part) for part in parts) or "the top level"


def schema_problem(config: Mapping[str, Any], schema_path: str | Path) -> str | None:
    """One line for the first (best-matching) schema violation of ``config``, naming the key; None if the
    config is valid."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(config)))
    if error is None:
        return None
    message = f"config.yaml: {_key_path(error.absolute_path)}: {error.message}"
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = sorted(error.schema.get("properties", {}))
        if known:
            message += f"; known keys there: {', '.join(known)}"
    return message


def config_problem(config: Mapping[str, Any]) -> str | None:
    """One line for the first problem of a schema-valid ``config`` that only resolving it shows (config.smk
    stops the workflow with it); None if every method, variant and pipeline resolves for every dataset."""
    from wsss_core.errors import InputError
    from wsss_core.methods import METHODS

    try:
        resolve.check_datasets(config)
        resolve.check_pretraining(config.get("pretraining", {}) or {})  # typed: wsss_core.pretraining.settings
        for dataset in config["datasets"]:
            resolve.stage_settings(config, dataset)  # the typed stages: sections (wsss_core.stages.settings)
            for run in resolve.runs_bases_first(config):
                resolve.method_settings(config, dataset, run)  # the method's typed settings (its module)
                if resolve.pipeline_choice(config, dataset, run).get("route") is None:
                    name = resolve.method_config(config, dataset, run)["name"]
                    return (f"config.yaml: methods.{name}.pipeline.route is missing (multi_stage or own_decoder): "
                            f"give the method a pipeline, or a base method to take it from")
                _check_overrides(config, dataset, run)
                method = METHODS.get(resolve.method_config(config, dataset, run)["name"])
                if resolve.pipeline_choice(config, dataset, run).get("refine") == "own" and method.pseudo_labels is None:
                    return (
                        f"config.yaml: methods.{run}.pipeline.refine is 'own', but method '{method.name}' makes no "
                        f"pseudo-labels of its own (only {', '.join(resolve.own_pseudo_label_methods())} do): use "
                        "crf, irn or psa"
                    )
                problem = _seed_background_problem(config, dataset, run, method)
                if problem:
                    return problem
    except InputError as error:
        return f"config.yaml: {error}"
    return None


def _seed_background_problem(config: Mapping[str, Any], dataset: str, run: str, method: Any) -> str | None:
    """One line when a run's pipeline goes through IRN with ``background: seeds`` (SIPE's reading) but its
    method exports no background map; None otherwise (other targets of the run: the IRN stage checks them)."""
    if resolve.pipeline_choice(config, dataset, run).get("refine") != "irn" or method.seed_background:
        return None
    from wsss_core.refine.settings import IRNSettings

    settings = resolve.refine_params(config, dataset, run, "irn").get("settings") or {}
    if IRNSettings.load(settings, f"stages.refine.irn.settings ({run}, {dataset})").background != "seeds":
        return None
    return (f"config.yaml: run '{run}' on {dataset} refines with IRN's background: seeds (preset sipe: "
            f"stages.refine.irn.settings or methods.{run}.pipeline.refine_overrides.irn), but method '{method.name}' "
            "exports no background map: use preset irn or rib for it")


def _check_overrides(config: Mapping[str, Any], dataset: str, run: str) -> None:
    """A method's ``refine_overrides`` / ``decoder_overrides`` on their ``stages:`` blocks, checked by the
    blocks' types (ViT-PCM's CRF kernel): a bad value names the override's key path."""
    from wsss_core.stages.settings import check_overrides

    choice = resolve.pipeline_choice(config, dataset, run)
    variant = (config.get("variants", {}) or {}).get(resolve.split_run(run)[0], {}) or {}
    owner = f"variants.{run}" if variant.get("pipeline") else f"methods.{resolve.method_config(config, dataset, run)['name']}"
    for refine in choice["refine_overrides"] or {}:
        check_overrides(resolve.refine_params(config, dataset, run, refine), ("refine", refine),
                        f"{owner}.pipeline.refine_overrides.{refine}")
    if choice["decoder_overrides"]:
        check_overrides(resolve.decoder_params(config, dataset, run), ("decoder_inference",),
                        f"{owner}.pipeline.decoder_overrides")


def parse_time_problem(config: Mapping[str, Any], schema_path: str | Path, argv: Sequence[str] = (),
                       environ: Mapping[str, str] | None = None, workdir: Path | None = None,
                       cuda_devices: int | None = None) -> str | None:
    """The first one-line message the workflow stops with when it parses ``config``, from the checks its
    rule files run in this order (``checks.smk``: schema, device; ``config.smk``: resolution and typed
    settings of every method, variant, stage section and pretraining recipe, then run-time values); None when
    the workflow would go on to build the DAG. Tests run each bad value through this."""
    from wsss_core import runtime
    from wsss_core.errors import InputError

    problem = schema_problem(config, schema_path)
    problem = problem or device_problem(config, argv, environ or {}, workdir or Path.cwd(), cuda_devices)
    problem = problem or config_problem(config)
    if problem:
        return problem
    try:
        runtime.check(config)
    except InputError as error:
        return f"config.yaml: {error}"
    return None


# ------------------------------------------------------------------------------------ targets
def command_line_targets(argv: Sequence[str]) -> list[str]:
    """The targets of a Snakemake command line (its own parser; [] when it cannot parse it)."""
    from snakemake.cli import get_argument_parser

    try:
        arguments, _ = get_argument_parser().parse_known_args(list(argv))
    except SystemExit:
        return []
    return [str(target) for target in (arguments.targets or [])]


def target_problem(config: Mapping[str, Any], target: str) -> str | None:
    """Why ``results/<dataset>/<run>/...`` names something the config does not know, or None."""
    parts = Path(target).parts
    if len(parts) < 3 or parts[0] != "results":
        return None
    datasets = sorted(config.get("datasets", {}))
    dataset, run, rest = parts[1], parts[2], parts[3:]
    if dataset not in datasets:
        return f"target '{target}' names dataset '{dataset}'; known datasets: {', '.join(datasets)}"
    ablations = set(config.get("stages", {}).get("ablations", {}) or {})
    ablation_files = {(Path(pattern).name,) for pattern in (paths.ABLATION, paths.ABLATION_TABLE)}
    if run in paths.DATASET_LEVEL_NAMES or (run in ablations and rest in ablation_files):
        return None
    if resolve.split_run(run)[0] not in resolve.run_names(config):
        variants = sorted(config.get("variants", {}) or {})
        return (
            f"target '{target}' names '{run}', which is neither a method nor a variant in config.yaml; known "
            f"methods: {', '.join(resolve.method_names(config))}; variants: {', '.join(variants) or 'none'}"
        )
    if len(rest) >= 2 and rest[0] == "masks":
        refine, network = rest[1], None
    elif len(rest) >= 2 and rest[0] == "seg":
        refine, _, network = rest[1].partition(".")
    else:
        return None
    try:
        resolve.check_route_names(config, refine, network, f"target '{target}'")
    except ConfigError as error:
        return str(error)
    return None
