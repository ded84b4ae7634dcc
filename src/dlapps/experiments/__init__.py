"""Studies: each composes data, models, training, analysis and reports into one reproducible run.

A study is a :class:`Study` subclass registered with ``@STUDIES.register(name)`` in one module of this package (its
config, its run, its report body); :func:`run_study` writes its standard files.
"""

from dlapps.experiments.base import STUDIES, RunContext, Study, StudyOutput, run_study
from dlapps.registry import import_submodules

import_submodules(__name__, __path__)  # each study registers itself


def get_study(name: str) -> Study:
    return STUDIES[name]


__all__ = ["STUDIES", "RunContext", "Study", "StudyOutput", "get_study", "run_study"]
