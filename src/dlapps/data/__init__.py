"""Data layer: datasets by name or path, OOD sets, the common corruptions, and device-resident batching for small
datasets."""

from dlapps.data.arrays import ImageArrays
from dlapps.data.corruptions import CORRUPTIONS, corrupt
from dlapps.data.datasets import (
    DATASET,
    DATASETS,
    Dataset,
    find_datasets,
    get_dataset,
    load_arrays,
    normalization,
)
from dlapps.data.resident import ResidentLoader, Shard, Transform
from dlapps.data.roots import resolve_data_root

__all__ = [
    "CORRUPTIONS",
    "DATASET",
    "DATASETS",
    "Dataset",
    "ImageArrays",
    "ResidentLoader",
    "Shard",
    "Transform",
    "corrupt",
    "find_datasets",
    "get_dataset",
    "load_arrays",
    "normalization",
    "resolve_data_root",
]
