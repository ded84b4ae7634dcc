"""The ``dlapps`` command line: a thin layer over :mod:`dlapps.experiments` and :mod:`dlapps.data`.

Input errors (:class:`~dlapps.errors.DlappsError`) print one line and exit with status 2; ``--debug`` (or
``DLAPPS_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dlapps.errors import DlappsError
from dlapps.registry import load_plugins

app = typer.Typer(
    help="Reproduce, explain and extend deep-learning-applications experiments on image classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()

DataRoot = Annotated[
    Path | None,
    typer.Option("--data-root", help="Folder holding the datasets (default: $DLAPPS_DATA, else ~/.cache/dlapps/data)."),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
Download = Annotated[
    bool, typer.Option(help="Download missing datasets and weights into the data root (checksums checked).")
]
ShowProgress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
Compile = Annotated[
    bool | None,
    typer.Option("--compile/--no-compile", help="torch.compile training (default: on CUDA only).", show_default=False),
]
Workers = Annotated[
    int | None,
    typer.Option(
        help="Runs of a study trained side by side, one thread each (default: one per core on a Linux CPU, "
        "where a few steps measure it faster; compiled runs train one at a time).",
        show_default=False,
    ),
]
Executor = Annotated[
    str,
    typer.Option(  # the backslash keeps rich from reading [ray] as markup
        help="Where the work runs: local (this machine) or ray (a task per training run, or per audit section "
        "and model, on a Ray cluster; pip install 'dlapps\\[ray]')."
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="The Ray cluster for --executor ray: auto (the one `ray start` joined this node to), host:port or "
        "ray://host:port (default: start one on this machine).",
        show_default=False,
    ),
]
Precision = Annotated[
    str,
    typer.Option(
        help="Training precision: fp32, bf16 (autocast) or auto (bf16 where it trains "
        "faster: CUDA from Ampere on, CPUs with AMX)."
    ),  # fmt: skip
]


@app.command()
def datasets(data_root: DataRoot = None) -> None:
    """List the registered datasets, where each split is found, and the archives and image folders in the data root."""
    from dlapps.data import find_datasets, resolve_data_root

    root = resolve_data_root(data_root)
    table = Table(title=f"data root: {root}")
    for column in ("dataset", "split", "found", "where"):
        table.add_column(column)
    for row in find_datasets(root):
        table.add_row(row.name, row.split, "yes" if row.found else "no", row.where)
    console.print(table)
    console.print(
        "Any dataset can also be named as a torchvision dataset (torchvision:SVHN, read from the data root), "
        "a path to an .npz archive (x_train.npz beside x_test.npz) or a path to an image folder "
        "(<path>/<class>/<image>, or <path>/<split>/<class>/<image>)."
    )


@app.command()
def fetch(
    only: Annotated[
        list[str] | None, typer.Option(help="Fetch only this (repeatable; default: everything listed below).")
    ] = None,
    data_root: DataRoot = None,
    progress: ShowProgress = True,
) -> None:
    """Download the course's datasets and published weights into the data root, once, checking every checksum:
    what `--download` does for a run, ahead of it (e.g. on a cluster's login node)."""
    from dlapps.data import resolve_data_root
    from dlapps.data.downloads import fetch as fetch_resources
    from dlapps.data.downloads import megabytes
    from dlapps.errors import DataError
    from dlapps.models.pretrained import downloadable

    root = resolve_data_root(data_root)
    resources = downloadable()
    names = list(only or resources)
    unknown = [name for name in names if name not in resources]
    if unknown:
        raise DataError(f"unknown downloadable resource {unknown[0]!r}; known: {', '.join(resources)}")
    fetched = fetch_resources([resources[name] for name in names], root, progress=progress)
    table = Table(title=f"data root: {root}")
    for column in ("name", "what", "size", "status"):
        table.add_column(column)
    for name in names:
        resource = resources[name]
        table.add_row(name, resource.title, megabytes(resource.size), "fetched" if name in fetched else "already there")
    console.print(table)


@app.command()
def studies() -> None:
    """List the studies and their profiles."""
    from dlapps.experiments import STUDIES

    for study in sorted(STUDIES.values(), key=lambda s: s.exercise or (99, "", "")):
        console.print(f"[bold]{study.name}[/bold]  (profiles: {', '.join(study.profiles)})\n  {study.summary}")


@app.command()
def config(
    study: Annotated[str, typer.Argument(help="Study name (see `dlapps studies`).")],
    profile: Annotated[str | None, typer.Option(help="Profile whose settings to show.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")] = None,
) -> None:
    """Print a study's resolved configuration: every key that --set accepts, with its value."""
    from dlapps.config import config_keys
    from dlapps.experiments import get_study

    resolved = get_study(study).config(profile, set_ or [])
    print(json.dumps(config_keys(resolved), indent=2, default=list))


@app.command()
def run(
    study: Annotated[str, typer.Argument(help="Study name (see `dlapps studies`).")],
    profile: Annotated[
        str | None,
        typer.Option(
            help="quick (a CPU's minutes), writeup (the write-up's own setups) or full (default: the study's)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: runs/<study>-<profile>).")] = None,
    device: Device = "auto",
    seeds: Annotated[int | None, typer.Option(help="Number of seeds per configuration.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")] = None,
    data_root: DataRoot = None,
    models_dir: Annotated[
        Path | None, typer.Option(help="Trained models shared between studies (default: models/ beside --out).")
    ] = None,
    download: Download = False,
    progress: ShowProgress = True,
    compile_: Compile = None,
    precision: Precision = "auto",
    workers: Workers = None,
    executor: Executor = "local",
    ray_address: RayAddress = None,
) -> None:
    """Run a study; write results.json/.csv, figures and report.md into the output folder."""
    from dlapps.experiments import RunContext, get_study, run_study
    from dlapps.train import resolve_device

    chosen = get_study(study)
    overrides = list(set_ or [])
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    resolved = chosen.config(profile, overrides)
    profile = profile or chosen.default_profile
    out = out or Path("runs") / f"{study}-{profile}"
    ctx = RunContext(
        out=out,
        device=resolve_device(device),
        data_root=data_root,
        models_dir=models_dir,
        download=download,
        show_progress=progress,
        command="dlapps " + shlex.join(sys.argv[1:]),
        compile=compile_,
        precision=precision,
        workers=workers,
        executor=executor,
        ray_address=ray_address,
    )
    results = run_study(chosen, resolved, ctx)
    console.print(f"[green]done[/green] in {results['wall_seconds']:.0f} s: report at {out / 'report.md'}")


@app.command()
def train(
    model: Annotated[
        str,
        typer.Option(
            help="Architecture: a registered name (resnet20, small_cnn...), torchvision:<arch>, timm:<name>, or "
            "file.py:factory / package.module:factory; its settings as --set model.<key>=<value>."
        ),
    ],
    dataset: Annotated[
        str,
        typer.Option(help="Dataset: a registered name, torchvision:<Name>, or a path to an archive or image folder."),
    ] = "cifar10",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Recipe setting: train.epochs=30, train_subset=5000, image_size=64, augment=false..."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the checkpoint and its metrics.")] = Path("runs/models"),
    device: Device = "auto",
    data_root: DataRoot = None,
    download: Download = False,
    progress: ShowProgress = True,
    compile_: Compile = None,
    precision: Precision = "auto",
) -> None:
    """Train one classifier (resuming if interrupted); under torchrun, data-parallel over the processes.

    The checkpoint describes its own model, so a study takes it as --set model=<checkpoint>.
    """
    from dlapps.config import apply_overrides, to_dict
    from dlapps.data import resolve_data_root
    from dlapps.data.downloads import ensure
    from dlapps.experiments import RunContext
    from dlapps.report.io import write_json
    from dlapps.train import ClassifierRecipe, resolve_device
    from dlapps.train.distributed import init_from_env

    recipe = apply_overrides(ClassifierRecipe(model=model, dataset=dataset), set_ or [])
    root = resolve_data_root(data_root)
    ensure(recipe.needs(root), root, download, progress=progress)
    world, chosen = init_from_env(resolve_device(device))
    ctx = RunContext(out=out, device=chosen, data_root=data_root, models_dir=out, download=download, compile=compile_,
                     precision=precision)  # fmt: skip
    with ctx.progress() as bars:
        classifier = ctx.classifier(recipe, progress=bars if progress and world.is_main else None)
    if world.is_main:
        info = classifier.info
        last = info["history"][-1]
        write_json(out / f"{recipe.key()}.json", {"recipe": to_dict(recipe), "processes": world.size, **info})
        console.print(
            f"{recipe.key()}: test acc {last['test_acc']:.4f} after {last['epoch']} epochs ({world.size} process(es)); "
            f"checkpoint {info['checkpoint']}"
        )


@app.command()
def audit(
    model: Annotated[
        list[str],
        typer.Option(
            help="The model: a published name, an architecture, or a checkpoint path (see README); "
            "repeat it to audit several models and compare them in one report."
        ),
    ],
    data: Annotated[str, typer.Option(help="The dataset: a registered name, torchvision:<Name>, or a path.")],
    ood: Annotated[
        list[str] | None, typer.Option(help="An OOD set (repeatable; default: another natural dataset, noise).")
    ] = None,
    profile: Annotated[str, typer.Option(help="quick (minutes on a CPU) or full.")] = "quick",
    out: Annotated[Path | None, typer.Option(help="Output folder (default: runs/audit-<profile>).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any audit setting: model.weights=FILE, attack_images=200... (repeatable)."),
    ] = None,
    device: Device = "auto",
    data_root: DataRoot = None,
    download: Download = False,
    progress: ShowProgress = True,
    precision: Precision = "auto",
    executor: Executor = "local",
    ray_address: RayAddress = None,
) -> None:
    """Audit a classifier on one dataset: accuracy, calibration, explanations, OOD detection and robustness,
    in one report (report.md and a self-contained report.html); several models: each audited, then compared."""
    from dlapps.experiments import RunContext
    from dlapps.experiments.audit import audit as run_audit
    from dlapps.experiments.audit_comparison import compare_models
    from dlapps.train import resolve_device

    out = out or Path("runs") / f"audit-{profile}"
    ctx = RunContext(out=out, device=resolve_device(device), data_root=data_root, download=download,
                     show_progress=progress, precision=precision, executor=executor, ray_address=ray_address)  # fmt: skip
    options = {"ood": tuple(ood or ()), "profile": profile, "settings": list(set_ or []), "ctx": ctx}
    if len(model) > 1:
        results = compare_models(tuple(model), data, **options)
        for row in results["comparison"]:
            if row["kind"] != "auroc":
                cells = ", ".join(
                    f"{m['label']} {100 * v['estimate']:.1f}%"
                    for m, v in zip(results["models"], row["values"], strict=True)
                )
                console.print(f"{row['name']}: {cells}")
        console.print(
            f"[green]done[/green] in {results['wall_seconds']:.0f} s: {out / 'report.md'} and {out / 'report.html'}"
        )
        return
    results = run_audit(model[0], data, **options)
    table = Table(title=f"audit of {results['model']['title']} on {results['data']['title']}")
    for column in ("section", "quantity", "value", "what it means"):
        table.add_column(column)
    for row in results["summary"]:
        table.add_row(*row)
    console.print(table)
    console.print(
        f"[green]done[/green] in {results['wall_seconds']:.0f} s: {out / 'report.md'} and {out / 'report.html'}"
    )


@app.command()
def reproduce(
    profile: Annotated[
        str, typer.Option(help="quick (a CPU's minutes), writeup (the write-up's own setups) or full.")
    ] = "quick",
    out: Annotated[Path | None, typer.Option(help="Output folder (default: runs/reproduce-<profile>).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Run only this study (repeatable).")] = None,
    device: Device = "auto",
    data_root: DataRoot = None,
    download: Download = False,
    progress: ShowProgress = True,
    compile_: Compile = None,
    precision: Precision = "auto",
    workers: Workers = None,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a study's setting: STUDY.key=value (repeatable).")
    ] = None,
) -> None:
    """Run every study in order (reusing finished ones) and write report.md and a self-contained report.html."""
    from dlapps.errors import ConfigError
    from dlapps.experiments import RunContext
    from dlapps.experiments.reproduce import reproduce as run_all
    from dlapps.experiments.reproduce import writeup_studies
    from dlapps.train import resolve_device

    overrides: dict[str, list[str]] = {}
    for item in set_ or []:
        name, _, setting = item.partition(".")
        if name not in {s.name for s in writeup_studies()} or not setting:
            raise ConfigError(f"--set {item!r} must be STUDY.key=value, e.g. residual-mlp.train.epochs=2")
        overrides.setdefault(name, []).append(setting)

    out = out or Path("runs") / f"reproduce-{profile}"
    ctx = RunContext(
        out=out,
        models_dir=out / "models",
        device=resolve_device(device),
        data_root=data_root,
        download=download,
        show_progress=progress,
        compile=compile_,
        precision=precision,
        workers=workers,
        executor=executor,
        ray_address=ray_address,
    )
    outcomes = run_all(ctx, profile, tuple(only or ()), overrides)
    table = Table(title=f"dlapps reproduce --profile {profile}")
    for column in ("study", "status", "seconds", "findings that hold", "report"):
        table.add_column(column)
    for outcome in outcomes:
        claims = [c.holds for c in outcome.comparisons if c.is_claim]
        held = f"{sum(claims)} of {len(claims)}" if claims else "—"
        table.add_row(outcome.name, outcome.status, f"{outcome.seconds:.0f}", held, str(outcome.out / "report.md"))
    console.print(table)
    console.print(f"[green]done[/green]: {out / 'report.md'} and {out / 'report.html'}")


def main() -> None:
    debug = os.environ.get("DLAPPS_DEBUG") == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        debug = True
    try:
        load_plugins()
        app()
    except DlappsError as exc:
        if debug:
            raise
        print(f"dlapps: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # the machine's, not the input's: a full disk, a folder that went away...
        if debug:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"dlapps: error: could not write or read{where} ({exc.strerror or exc}); results written before "
              "are intact, and a rerun resumes from them", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C into exit status 130 without a word
            print("dlapps: interrupted; finished runs are kept and a rerun resumes from them", file=sys.stderr)
        raise
