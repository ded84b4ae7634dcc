"""Adversarial attacks in pixel space, their metrics, and adversarial training.

Every attack is ``attack(model, x, y, method=..., eps=...)`` on images in [0, 1] (the model owns its
normalisation) and returns an :class:`AttackResult`: the adversarial batch, per-sample success, iterations
to success, true-class probability and prediction before and after. The model's modes are restored.
"""

from dlapps.attacks.api import (
    ATTACKS,
    TARGETING_METRICS,
    Method,
    attack,
    attack_arrays,
    default_alpha,
    fgsm_and_pgd_accuracy,
    robustness_at,
    survives_restarts,
    targeted_against_untargeted,
)
from dlapps.attacks.base import PIXEL, AttackResult, TargetSpec, eps_label, resolve_targets
from dlapps.attacks.iterative import perturb
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

__all__ = [
    "ATTACKS",
    "PIXEL",
    "TARGETING_METRICS",
    "AdversarialStepLoss",
    "AttackResult",
    "Method",
    "TargetSpec",
    "attack",
    "attack_arrays",
    "clean_accuracy",
    "cumulative_success",
    "default_alpha",
    "eps_label",
    "fgsm_and_pgd_accuracy",
    "half_fooled",
    "mean_confidence_drop",
    "mean_iterations",
    "perturb",
    "resolve_targets",
    "robust_accuracy",
    "robustness_at",
    "showcase",
    "success_rate",
    "summarize",
    "survives_restarts",
    "targeted_against_untargeted",
]
