"""Where the studies not yet moved to :mod:`dlapps.train.writeup` import the write-up's models from."""

from dlapps.train.writeup import WRITEUP_CNN_TRAINING, writeup_cnn

__all__ = ["WRITEUP_CNN_TRAINING", "writeup_cnn"]
