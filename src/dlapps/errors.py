"""User-facing errors: each one is a single line that says what is wrong and how to fix it.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name where it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DlappsError(Exception):
    """Base class for errors caused by input (data, config, files), not by a bug."""


class DataError(DlappsError):
    """A dataset is missing, unreadable or not what it claims to be."""


class ConfigError(DlappsError):
    """A configuration key or value is invalid."""


class CheckpointError(DlappsError):
    """A checkpoint is unreadable, untrusted or does not fit the model/run."""


class OutputError(DlappsError):
    """A result, report, figure or checkpoint could not be written (a full disk, a file-size limit, a folder
    that cannot be written); nothing written before is lost."""


class AttackError(DlappsError, ValueError):
    """An adversarial attack was given inputs, settings or a model it cannot attack."""


class TrainingDiverged(DlappsError):
    """The training loss stopped being a finite number: the settings (learning rate first) need changing."""


class ClusterError(DlappsError):
    """Ray is missing, its cluster does not answer or lacks what a run asks for, or a run failed there for a
    reason of the cluster's (a worker out of memory); the runs that finished are kept."""
