"""Adversarial attacks in pixel space, their metrics, and adversarial training.

Every attack is ``attack(model, x, y, method, eps=..., threat=...)`` on images in [0, 1] (the model owns its
normalisation) and returns an :class:`AttackResult`: the adversarial batch, per-sample success, iterations
to success, true-class probability and prediction before and after. The model's modes are restored.
Attacks are :class:`Attack` subclasses registered with ``@ATTACKS.register(name)``, one module each.
"""

# ruff: noqa: I001 - attacks are imported in the order the registry (and reports) list them

from dlapps.attacks.attack import ATTACKS, Attack, make_attack
from dlapps.attacks.threats import THREATS, Threat
from dlapps.attacks.fgsm import FGSM, FGSMRandomStart
from dlapps.attacks.bim import BIM
from dlapps.attacks.pgd import PGD
from dlapps.attacks.mifgsm import MIFGSM
from dlapps.attacks.api import (
    TARGETING_METRICS,
    attack,
    attack_arrays,
    robust_accuracies,
    targeted_against_untargeted,
)
from dlapps.attacks.ensemble import STANDARD_ENSEMBLE, EnsembleResult, robustness_at, run_ensemble
from dlapps.attacks.trust import Check, gradient_health, trust_checks
from dlapps.attacks.base import PIXEL, AttackResult, TargetSpec, eps_label, resolve_targets
from dlapps.attacks.loop import perturb
from dlapps.attacks.metrics import (
    clean_accuracy,
    cumulative_success,
    half_fooled,
    mean_confidence_drop,
    mean_iterations,
    robust_accuracy,
    showcase,
    success_rate,
    summarize,
)
from dlapps.attacks.training import AdversarialStepLoss
from dlapps.registry import import_submodules

import_submodules(__name__, __path__)  # an attack added as one more module registers itself

__all__ = [
    "ATTACKS",
    "PIXEL",
    "TARGETING_METRICS",
    "BIM",
    "FGSM",
    "MIFGSM",
    "PGD",
    "THREATS",
    "AdversarialStepLoss",
    "Attack",
    "AttackResult",
    "FGSMRandomStart",
    "Threat",
    "TargetSpec",
    "attack",
    "attack_arrays",
    "clean_accuracy",
    "cumulative_success",
    "eps_label",
    "robust_accuracies",
    "half_fooled",
    "make_attack",
    "mean_confidence_drop",
    "mean_iterations",
    "perturb",
    "resolve_targets",
    "robust_accuracy",
    "robustness_at",
    "showcase",
    "success_rate",
    "summarize",
    "run_ensemble",
    "trust_checks",
    "gradient_health",
    "STANDARD_ENSEMBLE",
    "EnsembleResult",
    "Check",
    "targeted_against_untargeted",
]
