"""Every keras-tuner internal `keras_resnet.tuning` relies on, in one place.

keras-tuner 1.4.x (setup.py pins it). Each entry says why no public API does
the job. `tests/test_tuning.py::test_the_keras_tuner_internals_we_use_are_still_there`
checks each one and names the one that moved when a keras-tuner release moves
or renames it.
"""

from __future__ import annotations

import keras_tuner as kt

# The oracle's gRPC service: keras-tuner's only public server, start_server, never returns.
from keras_tuner.src import protos

# OracleServicer and exit_chief, for our own chief server (distributed.serve).
from keras_tuner.src.distribute import oracle_chief

# keras-tuner's own "this process is the chief" test (from its environment); not exported.
from keras_tuner.src.distribute.utils import is_chief_oracle

# Writes state files exactly as keras-tuner reads them back; not exported.
from keras_tuner.src.utils import save_json

PRIVATE_MEMBERS: dict[type, dict[str, str]] = {
    kt.Oracle: {
        "_random_values": "every oracle's random draws go through it: redrawn over max_params",
        "_save_trial": "writes trial.json in place; overridden to write it atomically",
        "_get_oracle_fname": "where save() writes oracle.json, which our atomic save replaces",
        "_get_trial_dir": "where _save_trial writes trial.json",
    },
    kt.Tuner: {
        "_get_tuner_fname": "where save() writes the tuner's state, which our atomic save replaces",
        "_is_worker": "whether this process is a worker of a distributed search",
    },
}
"""Private methods of public classes that `tuners.py` overrides or calls: why."""

PRIVATE_ATTRIBUTES = {
    "OracleClient.stub": "every call to the chief goes through it, with a fixed 1-hour timeout",
    "OracleServicer.stop_triggered": "set once a worker was told to stop; ends our server loop",
}
"""Private attributes of keras-tuner objects that `distributed.py` reads or replaces: why."""

__all__ = ["PRIVATE_ATTRIBUTES", "PRIVATE_MEMBERS", "is_chief_oracle", "oracle_chief",
           "protos", "save_json"]  # fmt: skip
