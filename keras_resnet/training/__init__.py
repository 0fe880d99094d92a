"""Training: one call from a spec (or model) and a dataset to a finished run directory.

`train` builds the model from a spec with `build_resnet`, feeds it the
pipelines of `keras_resnet.data.load_dataset`, and leaves one run directory:

```
run_dir/
  run.json          what was asked (spec, dataset, hyperparameters): a rerun must match
  best.keras        the epoch with the lowest validation loss
  last.keras        the last finished epoch
  history.csv       per-epoch metrics (CSVLogger's columns, rewritten atomically)
  logs/             TensorBoard
  backup/           Keras' BackupAndRestore files while a run is unfinished (written atomically)
  backup-set-aside/ backup files that did not load on a resume, kept for inspection
  curves.png        loss and accuracy, train vs validation
  metrics.json      the result (test accuracy/loss of best.keras, params, timing, ...)
```

Resume: the run state is kept in Keras' `BackupAndRestore` files, the current and
the previous epoch, written atomically by `keras_resnet.training.backup` (a pair
that does not load is set aside and the previous one used), so a process killed
at any moment, even with SIGKILL and even while a checkpoint is written, loses at
most the epoch in progress: rerunning the same call continues from the last
finished epoch and `metrics.json` says where it resumed. Once the last epoch
is done, `run.json` says `"status": "trained"`; a run that stopped after that
(while evaluating, plotting or writing metrics) is finished by the rerun
without training again. Rerunning a finished run returns its metrics.

Safety: every file is written atomically (`keras_resnet._io`), so a kill never
leaves a truncated `best.keras`; one found anyway (damaged by something else)
is discarded on resume and written again by the next epoch. The directory is
locked while a process trains in it. A loss that turns NaN or infinite stops
the run at once with `TrainingDivergedError`, keeping the checkpoints of the
last good epoch.
"""

from keras_resnet.errors import TrainingDivergedError
from keras_resnet.training.config import (
    TrainConfig,
    default_strategy,
    make_loss,
    make_optimizer,
)
from keras_resnet.training.loop import train
from keras_resnet.training.run_dir import (
    BEST,
    CURVES,
    HISTORY,
    LAST,
    METRICS,
    RUN_CONFIG,
    print_summary,
)

__all__ = [
    "BEST",
    "CURVES",
    "HISTORY",
    "LAST",
    "METRICS",
    "RUN_CONFIG",
    "TrainConfig",
    "TrainingDivergedError",
    "default_strategy",
    "make_loss",
    "make_optimizer",
    "print_summary",
    "train",
]
