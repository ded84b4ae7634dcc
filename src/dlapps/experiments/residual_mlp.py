"""Study ``residual-mlp``: do residual connections let deep MLPs train?

Plain MLPs and residual MLPs (1 or 2 hidden layers per block) of the same width and depth are trained on a
dataset (MNIST by default) over several seeds. For a given depth and seed, all variants start from
identical weights (same parameters, created in the same order), so the shortcuts are the only difference.
Writes a mean ± std table, accuracy-vs-depth and training curves, and per-layer gradient norms (weights and
biases apart) for the variants at one depth, at initialisation and trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from dlapps.config import PositiveInt, require
from dlapps.data import DATASET, get_dataset
from dlapps.experiments.base import STUDIES, OnDataset, RunContext, Study, StudyOutput
from dlapps.explain import layer_gradient_norms
from dlapps.report import figures
from dlapps.report.comparison import Comparison
from dlapps.report.markdown import Heading, Image, format_mean_std, mean_std, table
from dlapps.report.seeds import over_seeds, seed_curves, seed_values, series
from dlapps.train import ClassifierRecipe, TrainConfig, initial_model, training_batches

# The course write-up's single-run test accuracies (width 16, MNIST).
WRITEUP: dict[str, dict[int, float]] = {
    "mlp": {2: 0.93, 8: 0.88, 32: 0.11, 64: 0.11},
    "residual-1": {2: 0.94, 8: 0.95, 32: 0.95, 64: 0.35},
    "residual-2": {2: 0.93, 8: 0.95, 32: 0.96, 64: 0.96},
}


@dataclass(frozen=True)
class ResidualMLPConfig(OnDataset):
    dataset: Annotated[str, DATASET] = "mnist"
    depths: tuple[PositiveInt, ...] = (2, 8, 32, 64)
    width: PositiveInt = 16
    layers_per_block: tuple[PositiveInt, ...] = (1, 2)
    seeds: PositiveInt = 3
    train_subset: PositiveInt | None = None  # None: the whole training split
    test_subset: PositiveInt | None = None
    gradient_depth: PositiveInt = 32
    gradient_batches: PositiveInt = 10
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=10, batch_size=128, optimizer="adam", lr=1e-3)
    )

    def validate(self) -> None:
        require(len(self.depths) > 0, "depths must not be empty")
        for depth in (*self.depths, self.gradient_depth):
            for k in self.layers_per_block:
                require(depth % k == 0, f"depth {depth} is not a multiple of layers_per_block {k}")

    def variants(self) -> dict[str, dict[str, Any]]:
        """Variant key -> model name and hyper-parameters (besides depth)."""
        found = {"mlp": {"model": "mlp"}}
        for k in self.layers_per_block:
            found[f"residual-{k}"] = {"model": "residual_mlp", "layers_per_block": k}
        return found

    def recipe(self, variant: str, depth: int, seed: int) -> ClassifierRecipe:
        hparams = {k: v for k, v in self.variants()[variant].items() if k != "model"}
        hparams |= {"width": self.width, "depth": depth}
        return ClassifierRecipe(
            self.variants()[variant]["model"], tuple(sorted(hparams.items())), self.dataset, self.image_size,
            self.train, self.train_subset, self.test_subset, augment=False, seed=seed,
        )  # fmt: skip


def reference_gap(config: ResidualMLPConfig) -> str | None:
    """Why the write-up's numbers do not apply to this setup (None: they do)."""
    if not config.is_dataset("mnist"):
        return f"the write-up's MLP results are on MNIST; this run is on {get_dataset(config.dataset).title}"
    if config.width != 16:
        return f"the write-up's MLPs have width 16; these have width {config.width}"
    return None


def writeup_reference(config: ResidualMLPConfig, variant: str, depth: int) -> float | None:
    return None if reference_gap(config) else WRITEUP.get(variant, {}).get(depth)


def variant_label(key: str) -> str:
    if key == "mlp":
        return "MLP"
    k = int(key.split("-")[1])
    return f"ResidualMLP ({k} layer{'s' if k > 1 else ''}/block)"


@STUDIES.register("residual-mlp")
class ResidualMLP(Study):
    summary = "Plain vs residual MLPs of growing depth (MNIST by default): accuracy, training curves, gradient flow."
    config_type = ResidualMLPConfig
    # full is the write-up's own setup (all of MNIST, 10 epochs, width 16), with 3 seeds where it ran once
    profiles = {"quick": {"seeds": 2, "train_subset": 20_000, "train.epochs": 5}, "full": {}, "writeup": {}}
    exercise = (1, "1.1–1.2", "residual connections in deep MLPs")

    def run(self, config: ResidualMLPConfig, ctx: RunContext) -> StudyOutput:
        dataset = get_dataset(config.dataset)
        train, test = config.load(ctx, "train"), config.load(ctx)
        plan = [
            (f"{variant_label(v)}, depth {d}, seed {s}", {"variant": v, "depth": d, "seed": s}, config.recipe(v, d, s))
            for d in config.depths for v in config.variants() for s in range(config.seeds)
        ]  # fmt: skip
        with ctx.progress() as progress:
            records, models = ctx.trained_runs(plan, train, test, progress, "residual-mlp runs")
        at_gradient_depth = [
            (f["variant"], label) for label, f, _ in plan if (f["depth"], f["seed"]) == (config.gradient_depth, 0)
        ]
        trained = {variant: models[label].module for variant, label in at_gradient_depth}
        gradients = self._gradient_profiles(config, ctx, train, test, trained)
        results = {
            "data": {"dataset": config.dataset, "title": dataset.title, "train": train.source,
                     "train_size": min(len(train), config.train_subset or len(train)), "test": test.source,
                     "test_size": min(len(test), config.test_subset or len(test))},
            "summary": _summarize(config, records),
            "gradients": gradients,
            "runs": records,
        }  # fmt: skip
        return StudyOutput(results, [{k: v for k, v in r.items() if k != "history"} for r in records],
                           self._figures(config, results))  # fmt: skip

    def _gradient_profiles(self, config: ResidualMLPConfig, ctx: RunContext, train, test, trained) -> dict[str, Any]:
        """Gradient norms per layer at ``gradient_depth`` for seed 0: at initialisation and, if trained, after."""
        profiles: dict[str, dict[str, Any]] = {"init": {}, "trained": {}}
        for variant in config.variants():
            recipe = config.recipe(variant, config.gradient_depth, seed=0)
            batches = training_batches(recipe, train, test, ctx.device, config.gradient_batches)
            profiles["init"][variant] = layer_gradient_norms(
                initial_model(recipe, train, ctx.device), batches
            ).as_dict()
            if variant in trained:
                profiles["trained"][variant] = layer_gradient_norms(trained[variant], batches).as_dict()
        return profiles

    def _figures(self, config: ResidualMLPConfig, results: dict[str, Any]) -> dict[str, Any]:
        records, variants = results["runs"], list(config.variants())
        lines, references = {}, {}
        for v in variants:
            lines[variant_label(v)] = series(results["summary"], "depth", {"variant": v})
            seeded = [(s["depth"], s["writeup_reference"]) for s in results["summary"]
                      if s["variant"] == v and s["writeup_reference"] is not None]  # fmt: skip
            if seeded:
                references[variant_label(v)] = tuple(zip(*seeded, strict=True))
        found = {
            "accuracy_vs_depth.png": figures.mean_std_lines(
                lines, xlabel="depth (hidden layers)", ylabel="test accuracy", log2_x=True, references=references,
                title=f"{results['data']['title']}, width {config.width}: final test accuracy",
            ),
            "curves.png": figures.curves_grid(
                {f"depth {d}": {variant_label(v): seed_curves(records, "test_acc", {"variant": v, "depth": d})
                                for v in variants} for d in config.depths},
                ylabel="test accuracy",
            ),
        }  # fmt: skip
        for stage, profiles in results["gradients"].items():
            if profiles:
                when = "initialisation" if stage == "init" else "after training"
                found[f"gradients_{stage}.png"] = figures.gradient_norms(
                    {variant_label(v): p for v, p in profiles.items()},
                    title=f"Per-layer gradient norms at depth {config.gradient_depth}, {when}",
                )
        return found

    def title(self, config: ResidualMLPConfig, results: dict[str, Any]) -> str:
        return f"Residual connections in deep MLPs on {results['data']['title']}"

    def table(self, config: ResidualMLPConfig, results: dict[str, Any]) -> str:
        records, variants = results["runs"], list(config.variants())
        rows = []
        for depth in config.depths:
            row: list[object] = [depth]
            for v in variants:
                accs = seed_values(records, "test_acc", {"variant": v, "depth": depth})
                cell = format_mean_std(accs)
                reference = writeup_reference(config, v, depth)
                if reference is not None:
                    cell += f" ({reference:.2f}, Δ {mean_std(accs)[0] - reference:+.2f})"
                row.append(cell)
            rows.append(row)
        return table(["depth"] + [variant_label(v) for v in variants], rows)

    def body(self, config: ResidualMLPConfig, results: dict[str, Any]) -> list:
        t, data = config.train, results["data"]
        init = results["gradients"]["init"]
        first_last = table(
            ["variant", "first-layer weight grad", "last-layer weight grad", "ratio first/last"],
            [[variant_label(v), f"{p['weight'][0]:.2e}", f"{p['weight'][-1]:.2e}",
              f"{p['weight'][0] / p['weight'][-1]:.2e}"] for v, p in init.items()],
        )  # fmt: skip
        brackets = (
            "in brackets the course write-up's single run and our difference from it."
            if reference_gap(config) is None
            else "the course write-up has no run of this setup to compare with."
        )
        return [
            f"Plain vs residual MLPs of width {config.width} on {data['title']} ({data['train_size']} training / "
            f"{data['test_size']} test images), {config.seeds} seed(s) per cell, {t.epochs} epochs of {t.optimizer} "
            f"(lr {t.lr}, batch {t.batch_size}, {t.schedule} schedule), PyTorch default initialisation.",
            "*Depth* counts hidden `width → width` layers; all variants also have an input layer and a linear head, "
            "so an MLP and a ResidualMLP of the same depth have exactly the same parameters and, per seed, the same "
            "initial weights.",
            Heading("Final test accuracy"),
            f"Mean ± std over seeds; {brackets}",
            self.table(config, results),
            Image("accuracy_vs_depth.png", "accuracy vs depth"),
            Heading("Test accuracy per epoch (mean over seeds; band: min–max)"),
            Image("curves.png", "training curves"),
            Heading(f"Gradient flow at depth {config.gradient_depth}"),
            f"Mean L2 norm of the loss gradient per layer over {config.gradient_batches} training batches, weights "
            "and biases as separate series.",
            first_last,
            *(Image(f"gradients_{stage}.png", f"gradients, {stage}") for stage, p in results["gradients"].items() if p),
        ]

    def no_reference(self, config: ResidualMLPConfig) -> str | None:
        return reference_gap(config)

    def compare(self, config: ResidualMLPConfig, results: dict[str, Any]) -> list[Comparison]:
        """Each cell of the write-up's two tables, and its finding that 2 layers per block rescue depth 64."""
        if reference_gap(config):
            return []
        cells = {(r["variant"], r["depth"]): r for r in results["summary"]}
        rows = [
            Comparison(f"test accuracy, {variant_label(variant)}, depth {depth}", ours=cell["mean_test_acc"],
                       writeup=cell["writeup_reference"],
                       source=f"± {cell['std_test_acc']:.3f} over {cell['seeds']} seed(s); the write-up: one run")
            for (variant, depth), cell in cells.items() if cell["writeup_reference"] is not None
        ]  # fmt: skip
        one, two = cells.get(("residual-1", 64)), cells.get(("residual-2", 64))
        if one and two:
            rows.append(
                Comparison.claim(
                    "at depth 64, 2 layers per block train better than 1",
                    two["mean_test_acc"] > one["mean_test_acc"],
                    f"{two['mean_test_acc']:.3f} vs {one['mean_test_acc']:.3f}",
                )
            )
        return rows


def _summarize(config: ResidualMLPConfig, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells = over_seeds(records, ({"depth": d, "variant": v} for d in config.depths for v in config.variants()))
    return [{**cell, "writeup_reference": writeup_reference(config, cell["variant"], cell["depth"])} for cell in cells]
