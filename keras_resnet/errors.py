"""Errors of the work itself (not of the arguments), in a module that imports nothing heavy.

Bad arguments are `ValueError`s that name the argument and the value. These are
failures of a run that was set up correctly; the `keras-resnet` command reports
them in one line with exit status 1.
"""


class TrainingDivergedError(RuntimeError):
    """The training loss (or a weight) became NaN or infinite; the run keeps its last good epoch."""
