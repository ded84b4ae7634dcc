"""BIM, iterative FGSM (Kurakin et al. 2017, "Adversarial examples in the physical world"): steps of ``alpha``
from the input, each projected back onto the ball; :class:`~dlapps.attacks.attack.Attack`'s own step."""

from dlapps.attacks.attack import ATTACKS, Attack


@ATTACKS.register("bim")
class BIM(Attack):
    summary = "iterative FGSM from the input, projected after each step (Kurakin et al. 2017)"
