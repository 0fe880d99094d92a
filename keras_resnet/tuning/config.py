"""`SearchConfig`: what `search` does besides its dataset and run directory.

It is made of the parts a search has, each checked when made and each handed
to the code that uses it: the data (`keras_resnet.data.DataOptions`, loaded
once), the budget (`budgets.BudgetOptions`, the candidates' `Screen`), the
tuner (`tuners.TunerOptions`, `make_tuner`) and the cluster
(`distributed.ClusterOptions`, a chief's or worker's environment), plus the few
settings of the search itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from keras_resnet._checks import check_int_at_least, check_positive_int, received
from keras_resnet.data import DataOptions
from keras_resnet.spec import ResNetSpec, resolve_spec
from keras_resnet.tuning.budgets import BudgetOptions
from keras_resnet.tuning.distributed import ClusterOptions, check_distributed
from keras_resnet.tuning.space import SearchSpace
from keras_resnet.tuning.tuners import TunerOptions

PARTS = {
    "tuning": TunerOptions,
    "budget": BudgetOptions,
    "cluster": ClusterOptions,
    "data": DataOptions,
}
"""`SearchConfig`'s parts: attribute -> class (checked in this order)."""
DATA_KEYWORDS = ("image_size", "channels", "label_mode", "data_dir", "download", "augment")
"""The `DataOptions` fields a search takes as keywords (and records in its fingerprint)."""
_PART_KEYWORDS = {
    part: DATA_KEYWORDS if cls is DataOptions else tuple(f.name for f in dataclasses.fields(cls))
    for part, cls in PARTS.items()
}
_KEYWORD_PART = {name: part for part, names in _PART_KEYWORDS.items() for name in names}


@dataclasses.dataclass(frozen=True, init=False)
class SearchConfig:
    """What `search` does besides its dataset and run directory; checked when made.

    Made from keywords: each part's fields (`max_params=100_000`, `tuner="random"`,
    `role="worker"`, `image_size=16`, ...) go to that part, and read back the
    same way (`config.max_params` is `config.budget.max_params`); a whole part
    may be given too (`budget=BudgetOptions(...)`), keywords applying on top.

    Attributes:
        base: the spec the space derives from (a name, spec or dict; default
            by image size). Stored resolved, as a `ResNetSpec`.
        space: a `SearchSpace` (default `SearchSpace()`).
        data: how the dataset is read (`DataOptions`; the keywords `image_size`,
            `channels`, `label_mode`, `data_dir`, `download`, `augment`).
            `image_size` is an int here (default: the base spec's input size).
            An image size at which the base spec cannot train at the smallest
            batch size in this machine's memory is refused before the data is read.
        budget: the objective, the budgets and how latency is measured
            (`BudgetOptions`: `objective`, `max_params`, `max_latency_ms`,
            `latency_target`, `latency_threads`, `latency_model`).
        tuning: the tuner and how long it searches (`TunerOptions`: `tuner`,
            `max_trials`, `max_epochs`, `hyperband_factor`, `max_search_seconds`,
            `max_consecutive_failed_trials`).
        cluster: a distributed search's role (`ClusterOptions`: `role`,
            `oracle_address`, `tuner_id`, `oracle_timeout`, `allow_remote_oracle`).
        seed: data split, shuffling, initialisation and the oracle's draws.
        overwrite: start over (keeps the latency cache); never on a worker.
        retrain_epochs: 0 keeps the best trial's own weights as `best.keras`;
            N > 0 retrains the best candidate for N epochs with
            `keras_resnet.training.train` (in `run_dir/retrain`).
        verbose: 0 silent, 1 keras-tuner's trial reports and one line per epoch.

    Example:

    >>> config = SearchConfig(tuner="random", max_trials=10, max_params=100_000)
    >>> config.tuning.max_trials, config.budget.max_params
    (10, 100000)
    >>> search("digits", output_dir="runs/tune", config=config, image_size=16)  # doctest: +SKIP
    """

    base: ResNetSpec | None = None
    space: SearchSpace | None = None
    data: DataOptions = DataOptions()
    budget: BudgetOptions = BudgetOptions()
    tuning: TunerOptions = TunerOptions()
    cluster: ClusterOptions = ClusterOptions()
    seed: int = 0
    overwrite: bool = False
    retrain_epochs: int = 0
    verbose: int = 1

    KEYWORDS: ClassVar[frozenset[str]] = frozenset(
        {"base", "space", "seed", "overwrite", "retrain_epochs", "verbose", *PARTS, *_KEYWORD_PART}
    )
    """Every keyword `SearchConfig` (and so `search`) takes."""

    def __init__(self, **keywords: Any):
        unknown = sorted(set(keywords) - self.KEYWORDS)
        if unknown:
            raise TypeError(f"SearchConfig() got an unexpected keyword argument {unknown[0]!r}")
        check_positive_int("image_size", keywords.get("image_size"), allow_none=True)  # square
        for part, cls in PARTS.items():
            given = keywords.get(part)
            if given is not None and not isinstance(given, cls):
                raise ValueError(f"`{part}` must be a {cls.__name__}. {received(part, given)}")
            fields = {k: keywords[k] for k in _PART_KEYWORDS[part] if k in keywords}
            made = cls(**fields) if given is None else dataclasses.replace(given, **fields)
            object.__setattr__(self, part, made)
        for field in ("base", "space", "seed", "overwrite", "retrain_epochs", "verbose"):
            object.__setattr__(self, field, keywords.get(field, getattr(SearchConfig, field)))
        self.__post_init__()

    def __post_init__(self) -> None:
        check_positive_int("image_size", self.data.image_size, allow_none=True)
        # The fingerprint, the retraining and the train command carry the keywords only.
        for field in dataclasses.fields(DataOptions):
            value = getattr(self.data, field.name)
            if field.name not in DATA_KEYWORDS and value != field.default:
                raise ValueError(
                    f"`data` may set only {', '.join(DATA_KEYWORDS)} for a search. "
                    f"Received: data with {field.name}={value!r}"
                )
        check_int_at_least("retrain_epochs", self.retrain_epochs, 0)
        c = self.cluster  # a worker may not overwrite: the one rule across two parts
        check_distributed(
            c.role, c.oracle_address, c.tuner_id, self.overwrite, c.allow_remote_oracle
        )
        if self.space is not None and not isinstance(self.space, SearchSpace):
            raise ValueError(f"`space` must be a SearchSpace. {received('space', self.space)}")
        if self.base is not None:
            object.__setattr__(self, "base", resolve_spec(self.base))

    def __getattr__(self, name: str) -> Any:
        """A part's field by its keyword: `config.max_params` is `config.budget.max_params`."""
        part = _KEYWORD_PART.get(name)
        if part is None:
            raise AttributeError(f"'SearchConfig' object has no attribute {name!r}")
        return getattr(getattr(self, part), name)
