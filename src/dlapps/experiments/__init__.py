"""Studies: each composes data, models, training, analysis and reports into one reproducible run."""

from dlapps.errors import ConfigError
from dlapps.experiments.adv_train import STUDY as ADV_TRAIN
from dlapps.experiments.base import RunContext, Study
from dlapps.experiments.cam import STUDY as CAM
from dlapps.experiments.fgsm import STUDY as FGSM
from dlapps.experiments.ood import STUDY as OOD
from dlapps.experiments.residual_cnn import STUDY as RESIDUAL_CNN
from dlapps.experiments.residual_mlp import STUDY as RESIDUAL_MLP
from dlapps.experiments.targeted import STUDY as TARGETED

STUDIES: dict[str, Study] = {
    study.name: study for study in (RESIDUAL_MLP, RESIDUAL_CNN, CAM, OOD, FGSM, ADV_TRAIN, TARGETED)
}


def get_study(name: str) -> Study:
    try:
        return STUDIES[name]
    except KeyError:
        raise ConfigError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}") from None


__all__ = ["STUDIES", "RunContext", "Study", "get_study"]
