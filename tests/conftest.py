"""Shared test helpers: randomised weights so equivalence tests exercise every folded term."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# Shared helper modules (support/) and, for now, test modules that others import helpers from.
for _folder in ("support", "core", "export", "calib", "runtime", "bench", "app"):
    sys.path.insert(0, str(Path(__file__).parent / _folder))
# No test reaches the network: named encoder weights come from a localhost server or a local copy.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def reference_keys() -> dict:
    """Key names and shapes of the reference variant-n checkpoints (copied from the reference)."""
    return json.loads((FIXTURES / "official_state_dict_keys_variant_n.json").read_text())
