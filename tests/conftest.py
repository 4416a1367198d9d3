from __future__ import annotations

import numpy as np
import pytest

from napari_b2u.config import TrainConfig

from .utils import TINY, smooth_image


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig(steps=6, time_budget=None, **TINY)


@pytest.fixture
def noisy_pair():
    clean = smooth_image((96, 96))
    noisy = clean + np.random.default_rng(1).normal(0, 25, clean.shape).astype(np.float32)
    return clean, noisy


@pytest.fixture(scope="session")
def trained_model():
    """A tiny model trained for a few steps, shared by tests that only read it."""
    from napari_b2u.api import train

    clean = smooth_image((96, 96))
    noisy = clean + np.random.default_rng(1).normal(0, 25, clean.shape).astype(np.float32)
    return train(noisy, steps=30, time_budget=None, **TINY)
