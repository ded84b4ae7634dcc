from dataclasses import dataclass, field
from typing import Literal

import pytest

from dlapps.config import apply_overrides, config_keys, fingerprint, to_dict
from dlapps.errors import ConfigError
from dlapps.experiments import get_study
from dlapps.train import TrainConfig


@dataclass(frozen=True)
class Example:
    count: int = 1
    rate: float = 0.5
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = None
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.count <= 0:
            raise ConfigError(f"count must be positive, got {self.count}")


def test_overrides_are_parsed_by_field_type():
    config = apply_overrides(
        Example(),
        ["count=3", "rate=1e-3", "sizes=4,8,16", "limit=none", "flag=true", "mode=b", "train.lr=0.1", "train.epochs=2"],
    )
    assert config.count == 3 and config.rate == pytest.approx(1e-3) and config.sizes == (4, 8, 16)
    assert config.limit is None and config.flag is True and config.mode == "b"
    assert config.train.lr == pytest.approx(0.1) and config.train.epochs == 2
    assert apply_overrides(Example(), ["limit=7"]).limit == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("cuont=3", "unknown config key 'cuont'"),
        ("train.lrr=1", "unknown config key 'train.lrr'"),
        ("train=1", "unknown config key 'train'"),
        ("count=three", "count='three' is not a valid int"),
        ("mode=c", "mode='c' is not one of a, b"),
        ("flag=maybe", "not a boolean"),
        ("count=0", "count must be positive"),
        ("train.epochs=0", "train.epochs: must be positive"),
        ("train.optimizer=rmsprop", "is not one of sgd, adam, adamw"),
        ("count", "not of the form key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overrides(Example(), [override])


def test_typed_dict_overrides_are_type_checked():
    with pytest.raises(ConfigError, match="count must be int"):
        apply_overrides(Example(), {"count": 3.5})
    assert apply_overrides(Example(), {"count": 4, "rate": 1}).count == 4


def test_keys_fingerprint_and_dict():
    keys = config_keys(Example())
    assert keys["train.lr"] == TrainConfig().lr and "sizes" in keys
    assert fingerprint(to_dict(Example())) == fingerprint(to_dict(apply_overrides(Example(count=2), ["count=1"])))
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})  # the order of keys is no setting
    assert fingerprint(to_dict(Example())) != fingerprint(to_dict(Example(count=2)))
    assert to_dict(Example())["sizes"] == [1, 2]


def test_study_profiles_and_validation():
    study = get_study("residual-mlp")
    quick, full = study.config("quick"), study.config("full")
    assert full.train_subset is None and full.seeds >= 3 and full.depths == (2, 8, 32, 64)
    assert quick.train.epochs < full.train.epochs
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        study.config("fast")
    with pytest.raises(ConfigError, match="depths: must be positive, got 0"):
        study.config("quick", ["depths=0,8"])
    with pytest.raises(ConfigError, match="depth 9 is not a multiple of layers_per_block 2"):
        study.config("quick", ["depths=9"])
    with pytest.raises(ConfigError, match="dataset: unknown dataset 'nosuchdata'; registered: mnist"):
        study.config("quick", ["dataset=nosuchdata"])
    with pytest.raises(ConfigError, match="unknown study"):
        get_study("residual-mpl")
