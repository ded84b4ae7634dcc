"""Detector hyper-parameters by name: the run setting ``detector={...}`` reaches any registered detector's
constructor keyword, with one ConfigError for a wrong name, keyword or value; the quick subset of detectors."""

import re

import pytest

from dlapps.config import apply_overrides
from dlapps.errors import ConfigError
from dlapps.experiments.ood import OodConfig
from dlapps.ood import DETECTORS, DetectorSettings, create_detector, fast_detectors


def test_any_detector_keyword_is_set_by_name_from_the_command_line():
    config = apply_overrides(OodConfig(), ['detector={"react": {"percentile": 95}, "nac": {"layers": ["layer3"]}}'])
    assert config.detector.hparams == (("nac", (("layers", ("layer3",)),)), ("react", (("percentile", 95),)))
    detectors = config.detector.create(["react", "nac", "knn"])
    assert detectors["react"].percentile == 95 and detectors["nac"].layers == ("layer3",)
    assert detectors["knn"].k == 50  # not named: the constructor's default
    assert config.detector.hparams_of("react") == {"percentile": 95}
    assert config.detector.hparams_of("odin") == {"temperature": 1000.0, "epsilon": 0.0014}
    assert apply_overrides(OodConfig(), ['detector.hparams={"knn": {"k": 7}}']).knn_k() == 7
    assert hash(config)  # frozen all the way down


def test_id_classes_reach_every_detector_that_takes_classes():
    detectors = DetectorSettings().create(["mahalanobis", "rmds", "she", "msp"], id_classes=(0, 217))
    assert all(detectors[name].classes == (0, 217) for name in ("mahalanobis", "rmds", "she"))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('{"gram": {}}', "detector: unknown detector 'gram'; known: msp"),
        ('{"knn": {"kk": 3}}', "detector: detector 'knn' takes no kk; it takes k"),
        ('{"knn": {"k": "ten"}}', "detector 'knn': k must be int, got 'ten'"),
        ('{"react": {"percentile": 101}}', "detector 'react': percentile must be in (0, 100], got 101"),
        ('{"ash": {"variant": "q"}}', "detector 'ash': variant='q' is not one of p, b, s"),
        ('{"knn": 10}', "detector.hparams must be a tuple, got 10"),
    ],
)
def test_a_wrong_detector_keyword_or_value_is_one_config_error(setting, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(OodConfig(), [f"detector={setting}"])


def test_defaults_are_the_constructors_and_values_are_checked_in_the_library_too():
    assert all(DetectorSettings().hparams_of(name) is not None for name in DETECTORS)
    with pytest.raises(ConfigError, match="detector 'dice': sparsity must be a percentile in"):
        create_detector("dice", sparsity=100)


def test_fast_detectors_leave_out_those_that_run_backward_passes():
    assert set(DETECTORS) - set(fast_detectors()) == {"odin", "nac"}
    assert list(fast_detectors()) == [name for name in DETECTORS if name not in ("odin", "nac")]  # registry order
