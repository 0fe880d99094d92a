"""Keras Tuner search over ResNet width and depth, under parameter and latency budgets.

`HyperResNet` is a `keras_tuner.HyperModel` that maps hyperparameters to a
`ResNetSpec` and calls `build_resnet`; it has no layer code. `search` runs
keras-tuner's Hyperband, random search or Bayesian optimisation with it on a
`keras_resnet.data` dataset and leaves one run directory (trials.csv,
pareto.png, best_spec.json, best.keras, summary.json; see `run_dir`).

One concern a module:

- `space`: `SearchSpace` (width multiplier, number of stages, blocks per stage,
  block type, version, stem, optimizer, learning rate, weight decay, batch
  size), its checks and range parsing, and the candidate specs.
- `hypermodel`: `HyperResNet`, hyperparameters -> spec -> `build_resnet`, and
  `fit`; `TrialData`, a trial's training data before its batch size is known.
- `budgets`: `BudgetOptions` (objective, `max_params`, `max_latency_ms`, the
  latency target), `Budget` (what is over them, the score of a rejected trial).
- `screen`: `Screen`, the one object that judges candidates (the budgets, the
  latency target, cache and model), shared by the hypermodel, the tuner and the results.
- `latency`: `LatencyTarget` (keras, or a TFLite variant in LiteRT) and its one
  way to time a model, `measure_latency`, `latency_runtime` and `LatencyCache`.
- `latency_model`: `LatencyModel`, a candidate's latency predicted from its spec
  (a per-host table of micro-model latencies), so clearly over-budget ones are
  rejected unconverted.
- `tuners`: `TunerOptions`, keras-tuner's oracles and tuners with the budgets
  built in, their registry `TUNER_CLASSES` and `make_tuner`.
- `distributed`: `ClusterOptions` and keras-tuner's chief/worker mode
  (environment, the chief's server, the worker's client with deadlines,
  tuner-id checks).
- `config`: `SearchConfig`, made of the parts above and `DataOptions`.
- `search`: `search`, as a story of check, prepare, run, write; `run_dir`: the
  run directory's files, locks and fingerprint check; `results`: what a
  finished search writes, `pareto_front` (two axes, for the plot),
  `non_dominated` and `pareto_trials` (the front over objective, params and
  latency), `BEST_RULE`.
- `_kt_internals`: every keras-tuner internal the package relies on, and why.

See docs/tuning.md.
"""

from keras_resnet.constants import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_OPTIMIZERS,
    DEFAULT_ORACLE_TIMEOUT,
    DEFAULT_WIDTHS,
    LATENCY_TARGETS,
    OBJECTIVES,
    TUNERS,
)
from keras_resnet.tuning.budgets import BudgetOptions
from keras_resnet.tuning.config import SearchConfig
from keras_resnet.tuning.distributed import ClusterOptions, OracleUnreachableError
from keras_resnet.tuning.hypermodel import HyperResNet
from keras_resnet.tuning.latency import (
    LatencyCache,
    LatencyTarget,
    latency_runtime,
    measure_latency,
)
from keras_resnet.tuning.latency_model import LatencyModel
from keras_resnet.tuning.results import BEST_RULE, non_dominated, pareto_front, pareto_trials
from keras_resnet.tuning.screen import Screen
from keras_resnet.tuning.search import search
from keras_resnet.tuning.space import DEFAULT_LEARNING_RATES, DEFAULT_WEIGHT_DECAYS, SearchSpace
from keras_resnet.tuning.tuners import TunerOptions, make_tuner

__all__ = [
    "BEST_RULE",
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_OPTIMIZERS",
    "DEFAULT_ORACLE_TIMEOUT",
    "DEFAULT_WEIGHT_DECAYS",
    "DEFAULT_WIDTHS",
    "LATENCY_TARGETS",
    "OBJECTIVES",
    "TUNERS",
    "BudgetOptions",
    "ClusterOptions",
    "HyperResNet",
    "LatencyCache",
    "LatencyModel",
    "LatencyTarget",
    "OracleUnreachableError",
    "Screen",
    "SearchConfig",
    "SearchSpace",
    "TunerOptions",
    "latency_runtime",
    "make_tuner",
    "measure_latency",
    "non_dominated",
    "pareto_front",
    "pareto_trials",
    "search",
]
