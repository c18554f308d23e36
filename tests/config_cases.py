"""Settings cases shared by the tests of lfxai.config: a small schema and its values."""

from __future__ import annotations

import dataclasses

import pytest

from lfxai.config import BaseConfig, ConfigError


@dataclasses.dataclass(frozen=True)
class Demo(BaseConfig):
    methods: tuple[str, ...]
    ratio: float
    limit: int | None
    flag: bool


VALUES = dict(
    seed=1,
    device="cpu",
    data_dir="d",
    batch_size=2,
    n_epochs=1,
    dim_latent=2,
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    lr_schedule="constant",
    methods=["a"],
    ratio=0.5,
    limit=None,
    flag=False,
)


def raised(check, *args) -> str:
    """The ConfigError message ``check(*args)`` raises."""
    with pytest.raises(ConfigError) as error:
        check(*args)
    return str(error.value)
