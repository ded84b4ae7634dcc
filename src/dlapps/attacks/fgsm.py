"""FGSM (Goodfellow et al. 2015, "Explaining and harnessing adversarial examples"): one step of size ε.

``fgsm-rs`` starts from a uniform random point of the ball and steps 1.25 ε (Wong et al. 2020, "Fast is better
than free"): the single-step attack that adversarial training can use without catastrophic overfitting.
"""

from dlapps.attacks.attack import ATTACKS, Attack


@ATTACKS.register("fgsm")
class FGSM(Attack):
    summary = "one step of size ε along the gradient's sign (Goodfellow et al. 2015)"
    single_step = True


@ATTACKS.register("fgsm-rs")
class FGSMRandomStart(Attack):
    summary = "FGSM from a uniform random point of the ε-ball, a step of 1.25 ε (Wong et al. 2020)"
    single_step, random_start = True, True

    def default_alpha(self) -> float:
        return 1.25 * self.eps
