"""Datasets: MVTec-style layouts, AeBAD-S, Real-IAD, plain folders and the demo textures."""

from mmad_edge.data.dataset import LAYOUTS, AnomalyDataset, build_dataset
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.data.records import DatasetError, Record
from mmad_edge.data.split import hold_out_split

__all__ = [
    "LAYOUTS",
    "AnomalyDataset",
    "DatasetError",
    "Record",
    "build_dataset",
    "hold_out_split",
    "make_demo_dataset",
]
