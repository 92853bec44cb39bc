"""Training data: toy densities, scikit-learn's digits and user files, split with a seed.

Nothing is downloaded: the 2-D densities of FFJORD are generated from their
definitions (:mod:`flowkit.data.toy`), ``digits`` ships with scikit-learn, and
a user's ``.npy``/``.csv`` file is validated before training starts
(:mod:`flowkit.data.files`).
"""

from flowkit.data.datasets import BUILTIN_DATASETS, DataSplits, load_dataset, one_hot
from flowkit.data.files import check_array, load_array
from flowkit.data.sampler import BatchSampler
from flowkit.data.toy import TOY_CLASSES, TOY_DATASETS, sample_toy

__all__ = [
    "BUILTIN_DATASETS",
    "TOY_CLASSES",
    "TOY_DATASETS",
    "BatchSampler",
    "DataSplits",
    "check_array",
    "load_array",
    "load_dataset",
    "one_hot",
    "sample_toy",
]
