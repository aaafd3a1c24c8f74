"""Suite-wide setup: support/ on the import path, no network, the reference checkpoints' key sets."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# Shared helper modules, imported by plain name; test modules never import one another.
sys.path.insert(0, str(Path(__file__).parent / "support"))
# No test reaches the network: named encoder weights come from a localhost server or a local copy.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def reference_keys() -> dict:
    """Key names and shapes of the reference variant-n checkpoints (copied from the reference)."""
    return json.loads((FIXTURES / "official_state_dict_keys_variant_n.json").read_text())


@pytest.fixture(scope="session")
def official_classification_keys() -> dict:
    """Key names and shapes of the published UniRepLKNet-n ImageNet classification checkpoint."""
    return json.loads((FIXTURES / "official_classification_keys_variant_n.json").read_text())
