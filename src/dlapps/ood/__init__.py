"""Out-of-distribution detection: detectors, metrics and plots for image classifiers.

**Sign convention, for the whole package: a detector's score is higher for inputs that look more
in-distribution (ID).** Detectors whose paper scores OOD-ness (energy, distances) are negated to fit it,
and the metrics (:mod:`dlapps.ood.metrics`) take in-distribution as the positive class.

Every detector has one API: ``detector.fit(model, id_train_data)`` binds it to a classifier in eval mode
(and, for the detectors that set ``needs_data``, estimates statistics of the ID training data), then
``detector.score(x)`` gives an (N,) tensor for images ``x`` in [0, 1] on the model's device.
:func:`fit_detectors` and :func:`score_detectors` do the same for many detectors over whole datasets.
Detectors are classes registered with ``@DETECTORS.register(name)``, one module each; build them by name with
:func:`create_detector`, their hyper-parameters (constructor keywords) by name with :class:`DetectorSettings`.
:func:`fast_detectors` lists those that need no backward pass (all but ODIN and NAC).
"""

# ruff: noqa: I001 - detectors are imported in the order the registry (and reports) list them

from __future__ import annotations

from dlapps.ood.base import DETECTORS, Detector, NotFittedError, OutputDetector, fast_detectors
from dlapps.ood.msp import MSP
from dlapps.ood.maxlogit import MaxLogit
from dlapps.ood.energy import Energy
from dlapps.ood.odin import ODIN
from dlapps.ood.mahalanobis import Mahalanobis
from dlapps.ood.knn import KNN
from dlapps.ood.vim import ViM
from dlapps.ood.react import ReAct
from dlapps.ood.gen import GEN
from dlapps.ood.rmds import RMDS
from dlapps.ood.fdbd import FDBD
from dlapps.ood.she import SHE
from dlapps.ood.ash import ASH
from dlapps.ood.scale import SCALE
from dlapps.ood.dice import DICE
from dlapps.ood.nac import NAC
from dlapps.ood.metrics import (
    METRICS,
    aupr_in,
    aupr_out,
    auroc,
    fpr_at_95_tpr,
    fpr_at_tpr,
    ood_metrics,
    summarize_detectors,
)
from dlapps.ood.scoring import (
    DetectorEvaluation,
    Scored,
    evaluate_detectors,
    fit_detectors,
    score_detectors,
)
from dlapps.ood.settings import DetectorSettings, create_detector
from dlapps.registry import import_submodules

import_submodules(__name__, __path__)  # a detector added as one more module registers itself


__all__ = [
    "ASH",
    "DETECTORS",
    "DICE",
    "FDBD",
    "GEN",
    "KNN",
    "METRICS",
    "MSP",
    "NAC",
    "ODIN",
    "RMDS",
    "SCALE",
    "SHE",
    "Detector",
    "Energy",
    "DetectorEvaluation",
    "DetectorSettings",
    "Mahalanobis",
    "MaxLogit",
    "NotFittedError",
    "OutputDetector",
    "ReAct",
    "Scored",
    "ViM",
    "aupr_in",
    "aupr_out",
    "auroc",
    "create_detector",
    "evaluate_detectors",
    "fast_detectors",
    "fit_detectors",
    "fpr_at_95_tpr",
    "fpr_at_tpr",
    "ood_metrics",
    "score_detectors",
    "summarize_detectors",
]
