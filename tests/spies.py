"""A dlapps plug-in for the tests ($DLAPPS_PLUGINS=spies, see helpers.spy_env): with $DLAPPS_TEST_FIGURES set,
every figure saved is also kept there (figures_check.py); with $DLAPPS_TEST_EPOCHS set, every training epoch is
recorded in that file (helpers.recording_epochs)."""

import os
from pathlib import Path

import figures_check
import helpers
from dlapps.train import trainer

if os.environ.get(figures_check.SPY):
    figures_check.install()
if os.environ.get(helpers.EPOCHS):
    trainer._Training.epoch = helpers.recording_epochs(trainer._Training.epoch, Path(os.environ[helpers.EPOCHS]))
