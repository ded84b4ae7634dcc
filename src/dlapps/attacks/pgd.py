"""PGD (Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks"): iterative FGSM
from a uniform random point of the ball."""

from dlapps.attacks.attack import ATTACKS, Attack


@ATTACKS.register("pgd")
class PGD(Attack):
    summary = "iterative FGSM from a uniform random point of the ε-ball (Madry et al. 2018)"
    random_start = True
