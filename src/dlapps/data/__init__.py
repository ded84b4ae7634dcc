"""Data layer: datasets by name from a data root, and device-resident batching for small datasets."""

from dlapps.data.arrays import ImageArrays
from dlapps.data.datasets import DATASETS, DatasetSpec, find_datasets, get_spec, image_folder, load_arrays
from dlapps.data.resident import ResidentLoader
from dlapps.data.roots import resolve_data_root

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "ImageArrays",
    "ResidentLoader",
    "find_datasets",
    "get_spec",
    "image_folder",
    "load_arrays",
    "resolve_data_root",
]
