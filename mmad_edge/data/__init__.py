"""Datasets: MVTec-style layouts, AeBAD-S, Real-IAD, plain folders and the demo textures.

The torch ``AnomalyDataset`` (and ``build_dataset``) load on first use, so the torch-free parts
(``catalog``: records and labelled test frames) serve a runtime-only install.
"""

from typing import Any

from mmad_edge.data.catalog import LAYOUTS, labelled_split, split_records
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.data.records import DatasetError, Record
from mmad_edge.data.split import hold_out_split

_TORCH_NAMES = ("AnomalyDataset", "build_dataset")

__all__ = [
    "LAYOUTS",
    "AnomalyDataset",
    "DatasetError",
    "Record",
    "build_dataset",
    "hold_out_split",
    "labelled_split",
    "make_demo_dataset",
    "split_records",
]


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from mmad_edge.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
