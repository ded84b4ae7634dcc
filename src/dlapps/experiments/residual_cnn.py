"""Study ``residual-cnn``: skip connections in CNNs (He et al. 2016, section 4.2).

CIFAR ResNets with ``blocks`` basic blocks per stage (``6 * blocks + 2`` layers) are trained with and
without their identity shortcuts, over seeds, on a dataset (CIFAR-10 by default). Plain and residual twins
have identical parameters and, per seed, identical initial weights. Trained models are kept in the run
context's model folder, where the ``cam`` study finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlapps.config import PositiveInt
from dlapps.data import get_dataset
from dlapps.experiments.base import STUDIES, OnDataset, RunContext, Study, StudyOutput
from dlapps.explain import layer_gradient_norms
from dlapps.report import figures
from dlapps.report.comparison import Comparison
from dlapps.report.markdown import Heading, Image, format_mean_std, mean_std, table
from dlapps.report.seeds import over_seeds, seed_curves, seed_values, series
from dlapps.train import initial_model, training_batches
from dlapps.train.writeup import RESNET_RUNS, ResNetRuns

# He et al. 2016, Table 6: CIFAR-10 test error of ResNet-20/32/44/56/110 (widths 16/32/64, 164 epochs).
HE_2016_ACCURACY = {20: 0.9125, 32: 0.9249, 44: 0.9283, 56: 0.9303, 110: 0.9357}


@dataclass(frozen=True)
class ResidualCNNConfig(OnDataset, ResNetRuns):
    seeds: PositiveInt = 3
    gradient_batches: PositiveInt = 4


def label(blocks: int, skip: bool) -> str:
    return f"{'ResNet' if skip else 'Plain'}-{6 * blocks + 2}"


def _name(skip: bool) -> str:
    return "with skip" if skip else "plain"


@STUDIES.register("residual-cnn")
class ResidualCNN(Study):
    summary = "ResNets with and without skip connections at several depths (CIFAR-10 by default): accuracy curves."
    config_type = ResidualCNNConfig
    # the library's named runs, whose deepest net cam explains
    profiles = {"quick": {**RESNET_RUNS["quick"], "seeds": 1}, "full": RESNET_RUNS["full"],
                "writeup": {**RESNET_RUNS["writeup"], "seeds": 1}}  # fmt: skip
    exercise = (1, "1.3", "skip connections in CNNs")

    def run(self, config: ResidualCNNConfig, ctx: RunContext) -> StudyOutput:
        dataset = get_dataset(config.dataset)
        train, test = config.load(ctx, "train"), config.load(ctx)
        plan = [
            (f"{label(blocks, skip)}, seed {seed}", {"blocks": blocks, "layers": 6 * blocks + 2, "skip": skip, "seed": seed},
             config.recipe(blocks, skip, seed))
            for blocks in config.blocks for skip in (False, True) for seed in range(config.seeds)
        ]  # fmt: skip
        with ctx.progress() as progress:
            records, _ = ctx.trained_runs(plan, train, test, progress, "residual-cnn runs")
        results = {
            "data": {"dataset": config.dataset, "title": dataset.title, "train": train.source, "test": test.source},
            "runs": records,
            "summary": _summarize(config, records),
            "gradients": self._gradient_profiles(config, ctx, train, test),
        }
        rows = [{k: v for k, v in r.items() if k != "history"} for r in records]
        return StudyOutput(results, rows, self._figures(config, results))

    def _gradient_profiles(self, config: ResidualCNNConfig, ctx: RunContext, train, test) -> dict[str, Any]:
        """Per-layer gradient norms at initialisation for the deepest plain and residual nets (seed 0)."""
        deepest, profiles = max(config.blocks), {}
        for skip in (False, True):
            recipe = config.recipe(deepest, skip, seed=0)
            batches = training_batches(recipe, train, test, ctx.device, config.gradient_batches)
            model = initial_model(recipe, train, ctx.device)
            profiles[label(deepest, skip)] = layer_gradient_norms(model, batches).as_dict()
        return profiles

    def _figures(self, config: ResidualCNNConfig, results: dict[str, Any]) -> dict[str, Any]:
        records, found = results["runs"], {}
        for split in ("test", "train"):
            panels = {f"{6 * b + 2} layers": {_name(s): seed_curves(records, f"{split}_acc", {"blocks": b, "skip": s})
                                              for s in (False, True)} for b in config.blocks}  # fmt: skip
            found[f"curves_{split}.png"] = figures.curves_grid(panels, ylabel=f"{split} accuracy")
        lines = {_name(s): series(results["summary"], "layers", {"skip": s}) for s in (False, True)}
        found["accuracy_vs_depth.png"] = figures.mean_std_lines(
            lines, xlabel="layers", ylabel="final test accuracy",
            title=f"ResNets with and without skip connections on {results['data']['title']}",
        )  # fmt: skip
        found["gradients_init.png"] = figures.gradient_norms(
            results["gradients"], title="Per-layer gradient norms at initialisation (conv and linear layers)"
        )
        return found

    def title(self, config: ResidualCNNConfig, results: dict[str, Any]) -> str:
        return f"Skip connections in CNNs on {results['data']['title']}"

    def table(self, config: ResidualCNNConfig, results: dict[str, Any]) -> str:
        records, rows = results["runs"], []
        for blocks in config.blocks:
            plain, skip = (seed_values(records, "test_acc", {"blocks": blocks, "skip": s}) for s in (False, True))
            gap = mean_std(skip)[0] - mean_std(plain)[0]
            minutes = sum(r["train_seconds"] for r in records if r["blocks"] == blocks) / 60
            rows.append(
                [6 * blocks + 2, format_mean_std(plain), format_mean_std(skip), f"{100 * gap:+.1f}", f"{minutes:.1f}"]
            )
        return table(["layers", "plain", "residual (skip)", "skip − plain (points)", "train minutes (all runs)"], rows)

    def body(self, config: ResidualCNNConfig, results: dict[str, Any]) -> list:
        t = config.train
        return [
            f"ResNets in He et al.'s CIFAR form (3 stages of n basic blocks, widths {list(config.widths)}, option A "
            "shortcuts, global average pooling + linear head) with and without their shortcuts, on "
            f"{results['data']['title']} ({config.train_subset or 'all'} training images, "
            f"{config.test_subset or 'all'} test images, "
            f"{'crop + flip augmentation' if config.augment else 'no augmentation'}); {config.seeds} seed(s); "
            f"{t.epochs} epochs of {t.optimizer} (lr {t.lr}, {t.schedule} schedule, weight decay {t.weight_decay}, "
            f"batch {t.batch_size}). Plain and residual twins share parameters and initial weights.",
            Heading("Final test accuracy (mean ± std over seeds)"),
            self.table(config, results),
            Image("accuracy_vs_depth.png", "accuracy vs depth"),
            Heading("Accuracy per epoch (mean over seeds; band: min–max)"),
            Image("curves_test.png", "test accuracy"),
            Image("curves_train.png", "train accuracy"),
            "Train accuracy is measured on the augmented training batches while the weights change.",
            Heading("Gradient flow at initialisation (deepest nets)"),
            Image("gradients_init.png", "gradients"),
        ]

    def compare(self, config: ResidualCNNConfig, results: dict[str, Any]) -> list[Comparison]:
        """The write-up's finding (skip wins at every depth), He et al.'s degradation and, at their widths,
        accuracy; all of them are CIFAR-10 results. He et al. see plain nets degrade from 32 layers on (their
        plain-20 beats their deeper ones), so the degradation claim needs a plain net that deep."""
        if self.no_reference(config):
            return []
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
        shallow, deep = layers[0], layers[-1]
        if deep >= 32 and shallow < deep:
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
            rows += [
                Comparison(f"test accuracy, ResNet-{n}", ours=cells[n, True], literature=HE_2016_ACCURACY[n],
                           source=f"He et al. 2016, Table 6 (164 epochs; ours {config.train.epochs})")
                for n in layers if n in HE_2016_ACCURACY
            ]  # fmt: skip
        return rows

    def no_reference(self, config: ResidualCNNConfig) -> str | None:
        if not config.is_dataset("cifar10"):
            return f"the write-up and He et al. train on CIFAR-10; this run is on {get_dataset(config.dataset).title}"
        return None


def _summarize(config: ResidualCNNConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return over_seeds(
        records, ({"blocks": b, "layers": 6 * b + 2, "skip": s} for b in config.blocks for s in (False, True))
    )
