"""Fixtures shared by the official-weights tests: a stand-in for the published UniRepLKNet-n file
and what the reference's encoder computes from it."""

from __future__ import annotations

import pytest
from random_states import trained_like_state
from reference_encoder import reference_encoder_outputs


@pytest.fixture(scope="module")
def official_state(official_classification_keys) -> dict:
    shapes = official_classification_keys["encoder"]
    assert not any(k.startswith(("norm0.", "norm1.", "norm2.", "norm3.")) for k in shapes)
    return trained_like_state(shapes, seed=3)


@pytest.fixture(scope="module")
def reference_outputs(official_state):
    """The encoder the reference builds from these weights: non-strict load, norm0..2 left at 1 / 0."""
    return reference_encoder_outputs(official_state)
