"""Study ``residual-cnn``: skip connections in CIFAR CNNs (He et al. 2016, section 4.2).

CIFAR ResNets with ``blocks`` basic blocks per stage (``6 * blocks + 2`` layers) are trained with and
without their identity shortcuts, over seeds. Plain and residual twins have identical parameters and, per
seed, identical initial weights. Trained models are cached in the run context's model folder, where the
``cam`` study finds them. Writes accuracy curves (train and test), a mean ± std table, accuracy vs depth,
per-layer gradient norms at initialisation, and ``report.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlapps.config import require
from dlapps.data import DATASETS, load_arrays
from dlapps.experiments.base import RunContext, Study, environment_section, study_results
from dlapps.experiments.zoo import ClassifierRecipe, obtain_classifier, recipe_loaders
from dlapps.explain import layer_gradient_norms
from dlapps.report import figures
from dlapps.report.comparison import Comparison, comparison_section
from dlapps.report.io import save_figure, staged_output, write_csv, write_json, write_text
from dlapps.report.markdown import format_mean_std, mean_std, table
from dlapps.train import TrainConfig, seed_everything


@dataclass(frozen=True)
class ResidualCNNConfig:
    dataset: str = "cifar10"
    blocks: tuple[int, ...] = (3, 5, 9)  # per stage: ResNet-20, -32, -56
    widths: tuple[int, ...] = (16, 32, 64)
    seeds: int = 3
    train_subset: int | None = None
    test_subset: int | None = None
    augment: bool = True
    gradient_batches: int = 4
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=40, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="onecycle"
        )
    )

    def validate(self) -> None:
        require(self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        require(len(self.blocks) > 0 and all(b > 0 for b in self.blocks), f"blocks must be positive, got {self.blocks}")
        require(
            len(self.widths) == 3 and all(w > 0 for w in self.widths),
            f"widths must be 3 positive ints, got {self.widths}",
        )
        require(self.seeds > 0, f"seeds must be positive, got {self.seeds}")
        for key in ("train_subset", "test_subset"):
            value = getattr(self, key)
            require(value is None or value > 0, f"{key} must be positive or none, got {value}")
        require(self.gradient_batches > 0, f"gradient_batches must be positive, got {self.gradient_batches}")

    def recipe(self, blocks: int, skip: bool, seed: int) -> ClassifierRecipe:
        return ClassifierRecipe(
            model="cifar_resnet",
            hparams=(("blocks", blocks), ("skip", skip), ("widths", self.widths)),
            dataset=self.dataset,
            train=self.train,
            train_subset=self.train_subset,
            test_subset=self.test_subset,
            augment=self.augment,
            seed=seed,
        )


def label(blocks: int, skip: bool) -> str:
    return f"{'ResNet' if skip else 'Plain'}-{6 * blocks + 2}"


def run(config: ResidualCNNConfig, ctx: RunContext) -> dict[str, Any]:
    started = time.perf_counter()
    train = load_arrays(config.dataset, "train", ctx.data_root, ctx.download)
    test = load_arrays(config.dataset, "test", ctx.data_root, ctx.download)
    plan = [(b, skip, s) for b in config.blocks for skip in (False, True) for s in range(config.seeds)]
    records = []
    with ctx.progress() as progress:
        overall = progress.add_task("residual-cnn runs", total=len(plan))
        for blocks, skip, seed in plan:
            progress.update(overall, description=f"{label(blocks, skip)}, seed {seed}")
            recipe = config.recipe(blocks, skip, seed)
            t0 = time.perf_counter()
            _, info = obtain_classifier(recipe, ctx, progress=progress, train=train, test=test)
            history = info["history"]
            records.append(
                {
                    "blocks": blocks,
                    "layers": 6 * blocks + 2,
                    "skip": skip,
                    "seed": seed,
                    "model_key": recipe.key(),
                    "test_acc": history[-1]["test_acc"],
                    "train_acc": history[-1]["train_acc"],
                    "train_seconds": sum(h["seconds"] for h in history),
                    "wall_seconds": time.perf_counter() - t0,
                    "history": history,
                }
            )
            progress.console.print(f"{label(blocks, skip):10s} seed {seed}: test acc {records[-1]['test_acc']:.4f}")
            progress.advance(overall)
    gradients = _gradient_profiles(config, ctx, train, test)
    results = study_results(
        "residual-cnn",
        config,
        ctx,
        started,
        runs=records,
        summary=_summarise(config, records),
        gradients=gradients,
    )
    with staged_output(ctx.out) as stage:
        _write_artifacts(stage, config, results)
    return results


def _gradient_profiles(config: ResidualCNNConfig, ctx: RunContext, train, test) -> dict[str, Any]:
    """Per-layer gradient norms at initialisation for the deepest plain and residual nets (seed 0)."""
    deepest = max(config.blocks)
    profiles = {}
    for skip in (False, True):
        recipe = config.recipe(deepest, skip, seed=0)
        seed_everything(0)
        model = recipe.build().to(ctx.device).train()
        loader, _ = recipe_loaders(recipe, ctx, train, test)
        batches = [b for _, b in zip(range(config.gradient_batches), loader, strict=False)]
        profiles[label(deepest, skip)] = layer_gradient_norms(model, batches).as_dict()
    return profiles


def _summarise(config: ResidualCNNConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for blocks in config.blocks:
        for skip in (False, True):
            accs = [r["test_acc"] for r in records if r["blocks"] == blocks and r["skip"] == skip]
            mean, std = mean_std(accs)
            rows.append({"blocks": blocks, "layers": 6 * blocks + 2, "skip": skip, "mean_test_acc": mean,
                         "std_test_acc": std, "seeds": len(accs)})  # fmt: skip
    return rows


def _accuracy_table(config: ResidualCNNConfig, records: list[dict[str, Any]]) -> str:
    rows = []
    for blocks in config.blocks:
        plain = [r["test_acc"] for r in records if r["blocks"] == blocks and not r["skip"]]
        skip = [r["test_acc"] for r in records if r["blocks"] == blocks and r["skip"]]
        gap = mean_std(skip)[0] - mean_std(plain)[0]
        minutes = sum(r["train_seconds"] for r in records if r["blocks"] == blocks) / 60
        rows.append(
            [6 * blocks + 2, format_mean_std(plain), format_mean_std(skip), f"{100 * gap:+.1f}", f"{minutes:.1f}"]
        )
    return table(["layers", "plain", "residual (skip)", "skip − plain (points)", "train minutes (all runs)"], rows)


def _write_artifacts(stage: Path, config: ResidualCNNConfig, results: dict[str, Any]) -> None:
    records = results["runs"]
    write_json(stage / "results.json", results)
    write_csv(stage / "results.csv", [{k: v for k, v in r.items() if k != "history"} for r in records])
    accuracy_md = _accuracy_table(config, records)
    write_text(stage / "table.md", accuracy_md)
    for split in ("test", "train"):
        panels = {
            f"{6 * b + 2} layers": {
                ("with skip" if skip else "plain"): [
                    [h[f"{split}_acc"] for h in r["history"]] for r in records if r["blocks"] == b and r["skip"] == skip
                ]
                for skip in (False, True)
            }
            for b in config.blocks
        }
        save_figure(figures.curves_grid(panels, ylabel=f"{split} accuracy"), stage / f"curves_{split}.png")
    series = {}
    for skip in (False, True):
        rows = [s for s in results["summary"] if s["skip"] == skip]
        series["with skip" if skip else "plain"] = (
            [s["layers"] for s in rows],
            [s["mean_test_acc"] for s in rows],
            [s["std_test_acc"] for s in rows],
        )
    save_figure(
        figures.mean_std_lines(
            series,
            xlabel="layers",
            ylabel="final test accuracy",
            title="CIFAR ResNets with and without skip connections",
        ),
        stage / "accuracy_vs_depth.png",
    )
    save_figure(
        figures.gradient_norms(
            results["gradients"], title="Per-layer gradient norms at initialisation (conv and linear layers)"
        ),
        stage / "gradients_init.png",
    )
    write_text(stage / "report.md", _report(config, results, accuracy_md))


def _report(config: ResidualCNNConfig, results: dict[str, Any], accuracy_md: str) -> str:
    t = config.train
    n_train = config.train_subset or "all"
    return "\n".join(
        [
            "# Skip connections in CIFAR CNNs",
            "",
            f"CIFAR ResNets (He et al. 2016: 3 stages of n basic blocks, widths {list(config.widths)}, option A "
            "shortcuts, global average pooling + linear head) with and without their shortcuts, on "
            f"{config.dataset.upper()} ({n_train} training images, {config.test_subset or 'all'} test images, "
            f"{'crop + flip augmentation' if config.augment else 'no augmentation'}); {config.seeds} seed(s); "
            f"{t.epochs} epochs of {t.optimizer} (lr {t.lr}, {t.schedule} schedule, weight decay {t.weight_decay}, "
            f"batch {t.batch_size}). Plain and residual twins share parameters and initial weights.",
            "",
            "## Final test accuracy (mean ± std over seeds)",
            "",
            accuracy_md,
            "![accuracy vs depth](accuracy_vs_depth.png)",
            "",
            "## Accuracy per epoch (mean over seeds; band: min–max)",
            "",
            "![test accuracy](curves_test.png)",
            "",
            "![train accuracy](curves_train.png)",
            "",
            "Train accuracy is measured on the augmented training batches while the weights change.",
            "",
            "## Gradient flow at initialisation (deepest nets)",
            "",
            "![gradients](gradients_init.png)",
            "",
            *comparison_section(compare(config, results)),
            *environment_section(results, "cached models are not retrained"),
        ]
    )


# He et al. 2016, Table 6: CIFAR-10 test error of ResNet-20/32/44/56/110 (widths 16/32/64, 164 epochs).
HE_2016_ACCURACY = {20: 0.9125, 32: 0.9249, 44: 0.9283, 56: 0.9303, 110: 0.9357}


def compare(config: ResidualCNNConfig, results: dict[str, Any]) -> list[Comparison]:
    """The write-up's finding (skip wins at every depth), He et al.'s degradation and, at their widths, accuracy."""
    cells = {(r["layers"], r["skip"]): r["mean_test_acc"] for r in results["summary"]}
    layers = sorted({depth for depth, _ in cells})
    gaps = ", ".join(f"{n} layers {100 * (cells[n, True] - cells[n, False]):+.1f}" for n in layers)
    rows = [
        Comparison.claim(
            "skip connections give higher accuracy than the plain net at every depth",
            all(cells[n, True] > cells[n, False] for n in layers),
            f"skip − plain in points: {gaps}",
        )
    ]
    if len(layers) > 1:
        shallow, deep = layers[0], layers[-1]
        rows.append(
            Comparison.claim(
                f"the deeper plain net is worse than the shallower one ({deep} vs {shallow} layers)",
                cells[deep, False] < cells[shallow, False],
                f"{cells[deep, False]:.3f} vs {cells[shallow, False]:.3f}",
                by="literature",
                source="He et al. 2016, degradation (section 4.2)",
            )
        )
    if tuple(config.widths) == (16, 32, 64):
        for n in layers:
            if n in HE_2016_ACCURACY:
                rows.append(
                    Comparison(
                        f"test accuracy, ResNet-{n}",
                        ours=cells[n, True],
                        literature=HE_2016_ACCURACY[n],
                        source=f"He et al. 2016, Table 6 (164 epochs; ours {config.train.epochs})",
                    )
                )
    return rows


STUDY = Study(
    name="residual-cnn",
    summary="CIFAR ResNets with and without skip connections at several depths: accuracy curves and table.",
    default_config=ResidualCNNConfig,
    profiles={
        "quick": {
            "blocks": (1, 5),
            "widths": (8, 16, 32),
            "seeds": 1,
            "train_subset": 10_000,
            "test_subset": 2_000,
            "train.epochs": 6,
            "train.lr": 0.05,
        },
        "full": {},
    },
    run=run,
    compare=compare,
)
