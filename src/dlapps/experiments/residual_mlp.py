"""Study ``residual-mlp``: do residual connections let deep MLPs train?

Plain MLPs and residual MLPs (1 or 2 hidden layers per block) of the same width and depth are trained on
MNIST over several seeds. For a given depth and seed, all variants start from identical weights (same
parameters, created in the same order), so the shortcuts are the only difference. Writes per-run results,
a mean ± std table next to the seed's numbers, accuracy-vs-depth and training curves, and per-layer
gradient norms (weights and biases apart) for the variants at one depth, at initialisation and trained.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dlapps.config import require, to_dict
from dlapps.data import DATASETS, ImageArrays, ResidentLoader, get_spec, load_arrays
from dlapps.experiments.base import RunCache, RunContext, Study, environment_section, study_results
from dlapps.explain import layer_gradient_norms
from dlapps.models import create_model
from dlapps.report import figures
from dlapps.report.comparison import Comparison, comparison_section
from dlapps.report.io import save_figure, staged_output, write_csv, write_json, write_text
from dlapps.report.markdown import format_mean_std, mean_std, table
from dlapps.train import TrainConfig, fit, load_checkpoint, seed_everything

# The course write-up's single-run test accuracies (width 16, MNIST).
SEED_RESULTS: dict[str, dict[int, float]] = {
    "mlp": {2: 0.93, 8: 0.88, 32: 0.11, 64: 0.11},
    "residual-1": {2: 0.94, 8: 0.95, 32: 0.95, 64: 0.35},
    "residual-2": {2: 0.93, 8: 0.95, 32: 0.96, 64: 0.96},
}


@dataclass(frozen=True)
class ResidualMLPConfig:
    dataset: str = "mnist"
    depths: tuple[int, ...] = (2, 8, 32, 64)
    width: int = 16
    layers_per_block: tuple[int, ...] = (1, 2)
    seeds: int = 3
    train_subset: int | None = None  # None: the whole training split
    test_subset: int | None = None
    gradient_depth: int = 32
    gradient_batches: int = 10
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=10, batch_size=128, optimizer="adam", lr=1e-3)
    )

    def validate(self) -> None:
        require(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        spec = get_spec(self.dataset)
        require(spec.image_shape is not None, f"dataset {self.dataset!r} has no fixed image size for an MLP")
        require(len(self.depths) > 0, "depths must not be empty")
        require(all(d > 0 for d in self.depths), f"every depth must be positive, got {self.depths}")
        require(
            all(k > 0 for k in self.layers_per_block), f"layers_per_block must be positive, got {self.layers_per_block}"
        )
        for depth in (*self.depths, self.gradient_depth):
            for k in self.layers_per_block:
                require(depth > 0 and depth % k == 0, f"depth {depth} is not a multiple of layers_per_block {k}")
        require(self.width > 0, f"width must be positive, got {self.width}")
        require(self.seeds > 0, f"seeds must be positive, got {self.seeds}")
        for key in ("train_subset", "test_subset"):
            value = getattr(self, key)
            require(value is None or value > 0, f"{key} must be positive or none, got {value}")
        require(self.gradient_batches > 0, f"gradient_batches must be positive, got {self.gradient_batches}")

    def variants(self) -> dict[str, dict[str, Any]]:
        """Variant key -> model name and hyper-parameters (besides depth)."""
        found = {"mlp": {"model": "mlp"}}
        for k in self.layers_per_block:
            found[f"residual-{k}"] = {"model": "residual_mlp", "layers_per_block": k}
        return found


def variant_label(key: str) -> str:
    if key == "mlp":
        return "MLP"
    k = int(key.split("-")[1])
    return f"ResidualMLP ({k} layer{'s' if k > 1 else ''}/block)"


def _build(config: ResidualMLPConfig, variant: dict[str, Any], depth: int) -> torch.nn.Module:
    """A model of ``variant`` at ``depth``; it takes images in [0, 1] and normalises them itself."""
    spec = get_spec(config.dataset)
    hparams = {k: v for k, v in variant.items() if k != "model"}
    return create_model(
        variant["model"],
        num_classes=spec.num_classes,
        in_shape=spec.image_shape,
        width=config.width,
        depth=depth,
        mean=spec.mean,
        std=spec.std,
        **hparams,
    )


def _loaders(config: ResidualMLPConfig, train: ImageArrays, test: ImageArrays, seed: int):
    train_loader = ResidentLoader(
        train, batch_size=config.train.batch_size, shuffle=True, seed=seed, device=train.images.device
    )
    return train_loader, ResidentLoader(test, batch_size=1000, device=test.images.device)


def run(config: ResidualMLPConfig, ctx: RunContext) -> dict[str, Any]:
    started = time.perf_counter()
    train = load_arrays(config.dataset, "train", ctx.data_root, ctx.download).subset(config.train_subset).to(ctx.device)
    test = load_arrays(config.dataset, "test", ctx.data_root, ctx.download).subset(config.test_subset).to(ctx.device)
    variants = config.variants()
    cache = RunCache(ctx.out / "runs")
    data_key = {"dataset": config.dataset, "train": train.source, "train_n": len(train), "test_n": len(test)}
    plan = [(v, d, s) for d in config.depths for v in variants for s in range(config.seeds)]
    records: list[dict[str, Any]] = []
    with ctx.progress() as progress:
        overall = progress.add_task("residual-mlp runs", total=len(plan))
        for variant, depth, seed in plan:
            settings = {
                "variant": variants[variant],
                "depth": depth,
                "width": config.width,
                "seed": seed,
                "train": to_dict(config.train),
                "data": data_key,
            }
            key = cache.key(f"{variant}-d{depth}-s{seed}", settings)
            record = cache.get(key)
            if record is None:
                progress.update(overall, description=f"{variant_label(variant)}, depth {depth}, seed {seed}")
                seed_everything(seed)
                model = _build(config, variants[variant], depth).to(ctx.device)
                train_loader, test_loader = _loaders(config, train, test, seed)
                t0 = time.perf_counter()
                history = fit(
                    model,
                    train_loader,
                    test_loader,
                    config.train,
                    seed=seed,
                    progress=progress,
                    checkpoint=ctx.out / "checkpoints" / f"{key}.safetensors",
                    run_info=settings,
                    compile=ctx.compile,
                )
                record = {
                    "key": key,
                    "variant": variant,
                    "depth": depth,
                    "seed": seed,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "test_acc": history[-1].test_acc,
                    "train_acc": history[-1].train_acc,
                    "seconds": time.perf_counter() - t0,
                    "history": [asdict(h) for h in history],
                }
                cache.put(key, record)
                progress.console.print(
                    f"{variant_label(variant):32s} depth {depth:3d} seed {seed}: test acc {record['test_acc']:.4f}"
                )
            records.append(record)
            progress.advance(overall)
        gradients = _gradient_profiles(config, train, test, variants, records, ctx)
    summary = _summarise(config, records)
    results = study_results(
        "residual-mlp",
        config,
        ctx,
        started,
        data={"train": train.source, "train_size": len(train), "test": test.source, "test_size": len(test)},
        summary=summary,
        gradients=gradients,
        runs=records,
        cached_runs=cache.hits,
    )
    with staged_output(ctx.out) as stage:
        _write_artifacts(stage, config, results)
    return results


def _gradient_profiles(config, train, test, variants, records, ctx) -> dict[str, Any]:
    """Gradient norms per layer at ``gradient_depth`` for seed 0: at initialisation and, if trained, after."""
    train_loader, _ = _loaders(config, train, test, seed=0)
    batches = [batch for _, batch in zip(range(config.gradient_batches), train_loader, strict=False)]
    profiles: dict[str, dict[str, Any]] = {"init": {}, "trained": {}}
    for variant, hparams in variants.items():
        seed_everything(0)
        model = _build(config, hparams, config.gradient_depth).to(ctx.device)
        profiles["init"][variant] = layer_gradient_norms(model, batches).as_dict()
        trained = [
            r for r in records if r["variant"] == variant and r["depth"] == config.gradient_depth and r["seed"] == 0
        ]
        checkpoint = ctx.out / "checkpoints" / f"{trained[0]['key']}.safetensors" if trained else None
        if checkpoint is not None and checkpoint.is_file():
            load_checkpoint(checkpoint, model)
            profiles["trained"][variant] = layer_gradient_norms(model, batches).as_dict()
    return profiles


def _summarise(config: ResidualMLPConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for depth in config.depths:
        for variant in config.variants():
            accs = [r["test_acc"] for r in records if r["variant"] == variant and r["depth"] == depth]
            mean, std = mean_std(accs)
            rows.append(
                {
                    "depth": depth,
                    "variant": variant,
                    "mean_test_acc": mean,
                    "std_test_acc": std,
                    "seeds": len(accs),
                    "writeup_reference": SEED_RESULTS.get(variant, {}).get(depth),
                }
            )
    return rows


def _accuracy_table(config: ResidualMLPConfig, records: list[dict[str, Any]]) -> str:
    variants = list(config.variants())
    headers = ["depth"] + [f"{variant_label(v)}" for v in variants]
    rows = []
    for depth in config.depths:
        row: list[object] = [depth]
        for v in variants:
            accs = [r["test_acc"] for r in records if r["variant"] == v and r["depth"] == depth]
            reference = SEED_RESULTS.get(v, {}).get(depth)
            cell = format_mean_std(accs)
            if reference is not None:
                cell += f" ({reference:.2f}, Δ {mean_std(accs)[0] - reference:+.2f})"
            row.append(cell)
        rows.append(row)
    return table(headers, rows)


def _write_artifacts(stage: Path, config: ResidualMLPConfig, results: dict[str, Any]) -> None:
    records = results["runs"]
    variants = list(config.variants())
    write_json(stage / "results.json", results)
    write_csv(stage / "results.csv", [{k: v for k, v in r.items() if k != "history"} for r in records])
    accuracy_md = _accuracy_table(config, records)
    write_text(stage / "table.md", accuracy_md)

    series, references = {}, {}
    for v in variants:
        rows = [s for s in results["summary"] if s["variant"] == v]
        series[variant_label(v)] = (
            [s["depth"] for s in rows],
            [s["mean_test_acc"] for s in rows],
            [s["std_test_acc"] for s in rows],
        )
        seeded = [(s["depth"], s["writeup_reference"]) for s in rows if s["writeup_reference"] is not None]
        if seeded:
            references[variant_label(v)] = tuple(zip(*seeded, strict=True))
    save_figure(
        figures.mean_std_lines(
            series,
            xlabel="depth (hidden layers)",
            ylabel="test accuracy",
            title=f"{config.dataset.upper()}, width {config.width}: final test accuracy",
            log2_x=True,
            references=references,
        ),
        stage / "accuracy_vs_depth.png",
    )
    panels = {
        f"depth {d}": {
            variant_label(v): [
                [h["test_acc"] for h in r["history"]] for r in records if r["variant"] == v and r["depth"] == d
            ]
            for v in variants
        }
        for d in config.depths
    }
    save_figure(figures.curves_grid(panels, ylabel="test accuracy"), stage / "curves.png")
    figure_names = []
    for stage_name, profiles in results["gradients"].items():
        if profiles:
            name = f"gradients_{stage_name}.png"
            title = f"Per-layer gradient norms at depth {config.gradient_depth}, {'initialisation' if stage_name == 'init' else 'after training'}"
            save_figure(
                figures.gradient_norms({variant_label(v): p for v, p in profiles.items()}, title=title), stage / name
            )
            figure_names.append(name)
    write_text(stage / "report.md", _report(config, results, accuracy_md, figure_names))


def _report(config: ResidualMLPConfig, results: dict[str, Any], accuracy_md: str, gradient_figures: list[str]) -> str:
    t = config.train
    init = results["gradients"]["init"]
    first_last = table(
        ["variant", "first-layer weight grad", "last-layer weight grad", "ratio first/last"],
        [
            [
                variant_label(v),
                f"{p['weight'][0]:.2e}",
                f"{p['weight'][-1]:.2e}",
                f"{p['weight'][0] / p['weight'][-1]:.2e}",
            ]
            for v, p in init.items()
        ],
    )
    lines = [
        "# Residual connections in deep MLPs",
        "",
        f"Plain vs residual MLPs of width {config.width} on {config.dataset.upper()} "
        f"({results['data']['train_size']} training / {results['data']['test_size']} test images), "
        f"{config.seeds} seed(s) per cell, {t.epochs} epochs of {t.optimizer} (lr {t.lr}, batch {t.batch_size}, "
        f"{t.schedule} schedule), PyTorch default initialisation.",
        "",
        "*Depth* counts hidden `width → width` layers; all variants also have an input layer and a linear head, "
        "so an MLP and a ResidualMLP of the same depth have exactly the same parameters and, per seed, the same "
        "initial weights.",
        "",
        "## Final test accuracy",
        "",
        "Mean ± std over seeds; in brackets the course write-up's single run and our difference from it.",
        "",
        accuracy_md,
        "![accuracy vs depth](accuracy_vs_depth.png)",
        "",
        "## Test accuracy per epoch (mean over seeds; band: min–max)",
        "",
        "![training curves](curves.png)",
        "",
        f"## Gradient flow at depth {config.gradient_depth}",
        "",
        "Mean L2 norm of the loss gradient per layer over "
        f"{config.gradient_batches} training batches, weights and biases as separate series.",
        "",
        first_last,
    ]
    lines += [f"![{name}]({name})\n" for name in gradient_figures]
    lines += comparison_section(compare(config, results))
    lines += environment_section(results, f"{results['cached_runs']} run(s) reused from cache")
    return "\n".join(lines)


def compare(config: ResidualMLPConfig, results: dict[str, Any]) -> list[Comparison]:
    """Each cell of the write-up's two tables, and its finding that 2 layers per block rescue depth 64."""
    rows = []
    cells = {(r["variant"], r["depth"]): r for r in results["summary"]}
    for (variant, depth), cell in cells.items():
        if cell["writeup_reference"] is not None:
            rows.append(
                Comparison(
                    f"test accuracy, {variant_label(variant)}, depth {depth}",
                    ours=cell["mean_test_acc"],
                    writeup=cell["writeup_reference"],
                    source=f"± {cell['std_test_acc']:.3f} over {cell['seeds']} seed(s); the write-up: one run",
                )
            )
    deepest = max(config.depths)
    one, two = cells.get(("residual-1", deepest)), cells.get(("residual-2", deepest))
    if one and two:
        rows.append(
            Comparison.claim(
                f"at depth {deepest}, 2 layers per block train better than 1",
                two["mean_test_acc"] > one["mean_test_acc"],
                f"{two['mean_test_acc']:.3f} vs {one['mean_test_acc']:.3f}",
            )
        )
    return rows


STUDY = Study(
    name="residual-mlp",
    summary="Plain vs residual MLPs of growing depth on MNIST: accuracy, training curves, gradient flow.",
    default_config=ResidualMLPConfig,
    profiles={
        "quick": {"seeds": 2, "train_subset": 20_000, "train.epochs": 5},
        "full": {},
    },
    run=run,
    compare=compare,
)
