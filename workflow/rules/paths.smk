# The files each job reads: input functions and the path arguments of shell commands, every path built from
# the patterns of wsss_core.artefacts (`paths.<NAME>`, filled in by paths.path), which the rules' outputs are.


def run_file(wildcards, pattern, **fields):
    """``pattern`` (a run's artefact) for the job's dataset and run."""
    return paths.path(pattern, dataset=wildcards.dataset, method=wildcards.method, **fields)


def pipeline(wildcards):
    return resolve.pipeline_choice(config, wildcards.dataset, wildcards.method)


def makes_own_pseudo_labels(wildcards):
    """Whether the method behind a run exports pseudo-labels of its own (``refine: own``): its class says so
    (``Method.pseudo_labels``)."""
    return method_class(wildcards.dataset, wildcards.method).pseudo_labels is not None


# ------------------------------------------------------------------------------------ the dataset
def dataset_input(wildcards):
    """The generated dataset folder (synthetic), or the fingerprint of a dataset already on disk (rule
    dataset_fingerprint, so a changed image or list re-runs its stages) — whose root is checked here so
    that a missing dataset stops with one clear message."""
    if wildcards.dataset in GENERATED_DATASETS:
        return paths.path(paths.GENERATED_DATASET, dataset=wildcards.dataset)
    if resolve.is_prepared(config, wildcards.dataset):  # built from its archives (prepare.smk)
        return resolve.prepared_marker(config, wildcards.dataset)
    try:
        resolve.check_dataset_root(config, wildcards.dataset)
    except InputError as error:
        raise WorkflowError(str(error)) from None
    return paths.path(paths.DATASET_FINGERPRINT, dataset=wildcards.dataset)


# ---------------------------------------------------------------------------- a run's final result
def route_files(wildcards):
    """The configured route's files: ``result`` (its scores), ``predictions``, and on the multi-stage route
    ``masks`` / ``mask_eval`` (the refinement's) and ``segmentation_model``; a method's own pseudo-labels
    (``masks/own``) on the own-decoder route when it makes them."""
    choice = pipeline(wildcards)
    if choice["route"] == "own_decoder":
        route, refine = paths.route_dir(), ("own" if makes_own_pseudo_labels(wildcards) else None)
    else:
        route, refine = paths.route_dir(choice["refine"], choice["segmentation"]), choice["refine"]
    files = {
        "result": run_file(wildcards, paths.ROUTE_RESULT, route_dir=route),
        "predictions": run_file(wildcards, paths.PREDICTIONS, route_dir=route),
    }
    if refine is not None:
        files["masks"] = run_file(wildcards, paths.MASKS, refine=refine)
        files["mask_eval"] = run_file(wildcards, paths.MASK_EVAL, refine=refine)
    if choice["route"] != "own_decoder":
        files["segmentation_model"] = run_file(
            wildcards, paths.SEGMENTATION_MODEL, refine=choice["refine"], network=choice["segmentation"])
    return files


def final_result_sources(wildcards):
    """Scores that the final miou.json summarises: seeds, pseudo-masks (multi-stage) and the result."""
    files = route_files(wildcards)
    sources = {"result": files["result"], "seeds": run_file(wildcards, paths.SEED_EVAL)}
    if "mask_eval" in files:
        sources["masks"] = files["mask_eval"]
    return sources


def masks_argument(wildcards):
    """``--masks <eval.json>`` for the multi-stage route (the file is also a declared input)."""
    sources = final_result_sources(wildcards)
    return f"--masks {sources['masks']}" if "masks" in sources else ""


# -------------------------------------------------------------------------------------- shards
def _shard_files(wildcards, pattern):
    shards = dataset_shards(wildcards.dataset)
    return [paths.path(pattern, shard=shard, shards=shards, **dict(wildcards.items())) for shard in range(shards)]


def seed_shards(wildcards):
    """The seed-store shards that rule merge_seed_shards joins."""
    return _shard_files(wildcards, paths.SEED_SHARD)


def prediction_shards(wildcards):
    """The prediction shards of a segmentation network or of a method's own decoder."""
    return _shard_files(wildcards, paths.PREDICTION_SHARD)


# ------------------------------------------------------------------------------------- ablations
ABLATION_LEVEL_FILES = {"seeds": paths.SEED_EVAL, "final": paths.FINAL_RESULT}


def ablation_inputs(wildcards):
    """Each row's scores: its seed evaluation (``levels: seeds``, the default) or its final miou.json
    (``levels: final``: seed, pseudo-mask and final mIoU columns)."""
    pattern = ABLATION_LEVEL_FILES[ablation_table(wildcards).levels]
    return {
        f"row{index}": paths.path(pattern, dataset=wildcards.dataset, method=run)
        for index, run in enumerate(ablation_rows(wildcards).values())
    }


def ablation_rows_argument(wildcards):
    """``'LABEL=eval.json' ...`` for the stage, shell-quoted."""
    from shlex import quote

    return " ".join(
        quote(f"{label}={wildcards_path}")
        for label, wildcards_path in zip(ablation_rows(wildcards), ablation_inputs(wildcards).values())
    )


# ------------------------------------------------------------------------------------- reporting
def reporting_targets(dataset):
    """Every table and figure of a dataset: add to ``rule all`` (or default_targets) so that
    ``snakemake --report`` collects them."""
    targets = [paths.path(paths.SUMMARY, dataset=dataset), paths.path(paths.CLASS_IOU_CHART, dataset=dataset)]
    for run in reporting_runs(dataset):
        targets += [paths.path(pattern, dataset=dataset, method=run) for pattern in (paths.SAMPLE_GRID, paths.TRAINING_CURVES)]
    return targets


def reporting_figures(wildcards):
    """Every PNG of a dataset's reporting (class-IoU chart, per-run sample grids and training curves)."""
    return [target for target in reporting_targets(wildcards.dataset) if target.endswith(".png")]


def comparison_seeded_runs(dataset):
    """title → {run: [its run name at each seed]} of ``stages.reporting.comparisons`` over
    ``stages.reporting.seeds`` (the plain run at the top-level seed, ``run@seed<k>`` for the others)."""
    settings = reporting_settings(dataset)
    comparisons = {}
    for key, entry in settings.comparisons.items():
        _check_runs(entry.runs, f"stages.reporting.comparisons.{key}.runs")
        seeds = settings.seeds or [config.get("seed", 0)]
        comparisons[entry.title] = {run: [resolve.seeded_run(config, run, seed) for seed in seeds] for run in entry.runs}
    return comparisons


def _comparison_level(wildcards):
    """comparisons.md: whole chains (``miou.json``); comparisons_seeds.md: the seed level alone."""
    return paths.SEED_EVAL if wildcards.get("level") == "_seeds" else paths.FINAL_RESULT


def comparison_runs(wildcards):
    """title → {run: [the level's score file of each seed]}."""
    level = _comparison_level(wildcards)
    return {title: {run: [paths.path(level, dataset=wildcards.dataset, method=seeded) for seeded in seeds]
                    for run, seeds in runs.items()}
            for title, runs in comparison_seeded_runs(wildcards.dataset).items()}


def comparison_inputs(wildcards):
    """Each compared run's score file per seed, and its classifier evaluation (a level of the table)."""
    seeded = {name for runs in comparison_seeded_runs(wildcards.dataset).values() for names in runs.values()
              for name in names}
    return sorted(paths.path(pattern, dataset=wildcards.dataset, method=name)
                  for name in seeded for pattern in (_comparison_level(wildcards), paths.CLASSIFICATION))


def comparison_argument(wildcards):
    from shlex import quote

    return " ".join(
        quote(title + "".join(f"|{run}=" + ",".join(files) for run, files in runs.items()))
        for title, runs in comparison_runs(wildcards).items()
    )


def summary_input(wildcards):
    """The final scores of each run, and the masks/result scores of its extra routes."""
    dataset = wildcards.dataset
    inputs = [paths.path(pattern, dataset=dataset, method=run)
              for run in reporting_runs(dataset) for pattern in (paths.FINAL_RESULT, paths.CLASSIFICATION)]
    for run, routes in reporting_routes(dataset).items():
        for route in routes:
            refine, network = route.split(".", 1)
            inputs += [paths.path(paths.MASK_EVAL, dataset=dataset, method=run, refine=refine),
                       paths.path(paths.ROUTE_RESULT, dataset=dataset, method=run, route_dir=paths.route_dir(refine, network))]
    return inputs


def summary_run_dirs(wildcards):
    return " ".join(paths.path(paths.RUN, dataset=wildcards.dataset, method=run)
                    for run in reporting_runs(wildcards.dataset))


def class_iou_input(wildcards):
    return [paths.path(paths.FINAL_RESULT, dataset=wildcards.dataset, method=run)
            for run in reporting_runs(wildcards.dataset)]


def class_iou_scores(wildcards):
    """``--scores`` arguments: RUN=results/{ds}/{run}/miou.json."""
    return " ".join(f"{run}={score}" for run, score in zip(reporting_runs(wildcards.dataset), class_iou_input(wildcards)))


def sample_grid_input(wildcards):
    files = route_files(wildcards)
    inputs = {"dataset": dataset_input(wildcards), "seeds": run_file(wildcards, paths.SEEDS),
              "seed_eval": run_file(wildcards, paths.SEED_EVAL), "predictions": files["predictions"]}
    if "masks" in files:
        inputs["masks"] = files["masks"]
    return inputs


def sample_grid_masks_option(wildcards):
    """``--masks <store>`` when the route has pseudo-masks (the store is also a declared input)."""
    files = route_files(wildcards)
    return f"--masks {files['masks']}" if "masks" in files else ""


def training_curves_input(wildcards):
    inputs = {"model": run_file(wildcards, paths.MODEL), "seed_eval": run_file(wildcards, paths.SEED_EVAL)}
    files = route_files(wildcards)
    if "segmentation_model" in files:
        inputs["segmentation_model"] = files["segmentation_model"]
    return inputs


def segmentation_model_option(wildcards):
    """``--segmentation-model <model.pt>`` on the multi-stage route (also a declared input)."""
    files = route_files(wildcards)
    return f"--segmentation-model {files['segmentation_model']}" if "segmentation_model" in files else ""
