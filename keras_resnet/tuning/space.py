"""The search space: what `HyperResNet` may choose, its checks and its range parsing.

`SearchSpace` holds the user's settings, checked when it is made; `resolve`
turns them into concrete values for a base spec and an input size. A
candidate is the base spec with explicit choices applied (`candidate_spec`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from typing import Any

from keras_resnet._checks import is_int, is_number, received
from keras_resnet.constants import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_LEARNING_RATE,
    DEFAULT_OPTIMIZERS,
    DEFAULT_WEIGHT_DECAY,
    DEFAULT_WIDTHS,
    OPTIMIZERS,
)
from keras_resnet.spec import (
    BLOCKS,
    MAX_STAGE_BLOCKS,
    MAX_STAGES,
    MAX_TOTAL_BLOCKS,
    SHORTCUTS,
    STEMS,
    VERSIONS,
    ResNetSpec,
    StageSpec,
)

AUTO = "auto"
_SPEC_LIMITS = {"MAX_STAGES": MAX_STAGES, "MAX_STAGE_BLOCKS": MAX_STAGE_BLOCKS}

DEFAULT_LEARNING_RATES = {"sgd": (0.01, 0.2), "adam": (3e-4, 3e-3), "adamw": (3e-4, 3e-3)}
# Keras applies weight decay decoupled and scaled by the learning rate, so
# Adam's useful range sits far above SGD's.
DEFAULT_WEIGHT_DECAYS = {"sgd": (1e-5, 1e-3), "adam": (1e-3, 0.1), "adamw": (1e-3, 0.1)}

SMALL_IMAGE = 64
"""Below this side the default base spec is resnet20 (CIFAR stem), from it resnet18."""
IMAGENET_STEM_MIN, CIFAR_STEM_MAX = 32, 128
"""Default stems: CIFAR only below 32 px, both up to 127 px, ImageNet only from 128 px."""


def default_base(side: int | None) -> str:
    """The base spec for images of `side` px (None: the CIFAR net at its 32 px, as `train`)."""
    return "resnet20" if side is None or side < SMALL_IMAGE else "resnet18"


# --- checks and range parsing ---------------------------------------------------------------


def _parse_choices(name: str, value: Any, allowed: Sequence[str]) -> tuple[str, ...] | None | str:
    if value is None or value == AUTO:
        return value
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or any(v not in allowed for v in values):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of values from {list(allowed)}. "
            f"{received(name, value)}"
        )
    return tuple(dict.fromkeys(values))


def _parse_int_range(
    name: str, value: Any, limit: str
) -> tuple[int | None, int | None] | None | str:
    """An int (fixed), a (min, max) pair (either may be None: derived), AUTO or None.

    At most the spec's own limit (`keras_resnet.spec.<limit>`), so an absurd
    range is refused before any candidate is built. (The CLI's
    `_int_range` parses its `N` or `MIN-MAX` text; this checks the value.)
    """
    if value is None or value == AUTO:
        return value
    maximum = _SPEC_LIMITS[limit]
    pair = (value, value) if is_int(value) else value
    ok = isinstance(pair, (list, tuple)) and len(pair) == 2
    ok = ok and all(v is None or (is_int(v) and 1 <= v <= maximum) for v in pair)
    if ok and None not in pair and pair[0] > pair[1]:
        ok = False
    if not ok:
        raise ValueError(
            f"`{name}` must be a positive integer or a (min, max) pair of positive integers "
            f"with min <= max, at most {maximum} (keras_resnet.spec.{limit}). "
            f"{received(name, value)}"
        )
    return int(pair[0]) if pair[0] is not None else None, (
        int(pair[1]) if pair[1] is not None else None
    )


def _derive_range(name: str, value: Any, auto_low: int, auto_high: int) -> tuple[int, int]:
    """A parsed int range (or AUTO) with its missing bounds derived."""
    low, high = (None, None) if value == AUTO else value
    low = auto_low if low is None else low
    high = max(low, auto_high) if high is None else high
    if low > high:
        raise ValueError(
            f"`{name}` must be a (min, max) pair with min <= max. {received(name, value)}"
        )
    return low, high


def _parse_float_range(name: str, value: Any, allow_zero: bool) -> tuple[float, float]:
    """A number (fixed) or a (min, max) pair for log sampling (min > 0)."""
    pair = (value, value) if is_number(value) else value
    ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(is_number(v) for v in pair)
    if ok:
        low, high = float(pair[0]), float(pair[1])
        ok = low <= high and (low > 0 or (allow_zero and low == high == 0.0))
    if not ok:
        zero = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"`{name}` must be a number {zero} or a (min, max) pair with 0 < min <= max "
            f"(sampled on a log scale). {received(name, value)}"
        )
    return low, high


def _parse_per_optimizer(name: str, value: Any, allow_zero: bool) -> Any:
    """A float range for every optimizer, or a dict optimizer -> float range."""
    if value is None or value == AUTO:
        return value
    if isinstance(value, dict):
        unknown = [k for k in value if k not in OPTIMIZERS]
        if unknown:
            raise ValueError(
                f"`{name}` keys must be optimizers from {list(OPTIMIZERS)}. {received(name, value)}"
            )
        return {k: _parse_float_range(name, v, allow_zero) for k, v in value.items()}
    return _parse_float_range(name, value, allow_zero)


def _parse_sorted_set(name: str, value: Any, kind: str, ok: Any, cast: type) -> Any:
    """None, or a value or a non-empty sequence of values passing `ok`, sorted and unique."""
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple)) else (value,)
    if not values or not all(ok(v) for v in values):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of {kind}. {received(name, value)}"
        )
    return tuple(sorted({cast(v) for v in values}))


def _is_width(value: Any) -> bool:
    return is_number(value) and 0 < value < 16


def _is_batch_size(value: Any) -> bool:
    return is_int(value) and value >= 1


def _resolve_per_optimizer(
    value: Any, optimizers: Sequence[str], auto: dict, default: dict
) -> dict[str, tuple[float, float]]:
    """A resolved (min, max) per optimizer: None -> the training default, AUTO -> `auto`."""
    out = {}
    for opt in optimizers:
        if value is None:
            out[opt] = (default[opt], default[opt])
        elif value == AUTO:
            out[opt] = auto[opt]
        elif isinstance(value, dict):
            out[opt] = value.get(opt, auto[opt])
        else:
            out[opt] = value
    return out


# --- candidates -----------------------------------------------------------------------------


def stage_template(base: ResNetSpec, i: int) -> StageSpec:
    """Stage i of a candidate: the base's, or for extra stages twice the last filters."""
    if i < len(base.stages):
        return base.stages[i]
    last = base.stages[-1]
    return StageSpec(last.filters * 2 ** (i - len(base.stages) + 1), last.blocks, 2)


def candidate_spec(
    base: ResNetSpec,
    *,
    width: float,
    blocks: Sequence[int],
    block: str,
    version: str,
    stem: str,
    **parts: Any,
) -> ResNetSpec:
    """The spec for explicit choices (`len(blocks)` stages) on top of the base spec.

    `parts` are the family's optional parts (`PARTS`: se_ratio, groups, shortcut,
    drop_path_rate); `groups=g` also sets `width_per_group=64 // g`, so a grouped
    candidate keeps its 3x3 width and trades parameters and latency, as ResNeXt does.
    """
    stages = tuple(
        dataclasses.replace(stage_template(base, i), blocks=int(b)) for i, b in enumerate(blocks)
    )
    if "groups" in parts:
        groups = parts["groups"] if block == "bottleneck" else 1
        parts = {**parts, "groups": groups, "width_per_group": max(1, 64 // groups)}
    return dataclasses.replace(
        base, stages=stages, width=width, block=block, version=version, stem=stem, **parts
    )


def _is_rate(value: Any) -> bool:
    return is_number(value) and 0 <= value < 1


#: The family's optional parts a search can switch on:
#: SearchSpace field -> (spec field, what its values must be, check, cast).
PARTS = {
    "se_ratios": ("se_ratio", "numbers in [0, 1)", _is_rate, float),
    "groups": ("groups", "positive integers dividing 64",
               lambda v: is_int(v) and v >= 1 and 64 % v == 0, int),
    "shortcuts": ("shortcut", f"values from {list(SHORTCUTS)}", lambda v: v in SHORTCUTS, str),
    "drop_path_rates": ("drop_path_rate", "numbers in [0, 1)", _is_rate, float),
}  # fmt: skip


def _total_stride(base: ResNetSpec, num_stages: int) -> int:
    return math.prod(stage_template(base, i).stride for i in range(num_stages))


# --- the space ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What `HyperResNet` searches. Each field: None switches it off (the base spec's
    value, or the training default), a single value fixes it, a sequence or a
    (min, max) pair searches it, `"auto"` derives the range from the base spec
    and the input size (see `resolve`).

    Attributes:
        widths: width multipliers to choose from (`ResNetSpec.width`).
        num_stages: (min, max) number of stages. Stages beyond the base spec's
            double the previous filters and stride 2; fewer stages keep the
            first ones. Auto: one fewer than the base up to one more, while
            the last feature map keeps at least 2x2 pixels.
        blocks: (min, max) blocks of every stage, one integer hyperparameter per
            stage (`conv2_blocks`, `conv3_blocks`, ...). Auto: 1 to the base's
            deepest stage. None: the base's blocks.
        block_types: `"basic"` and/or `"bottleneck"`.
        versions: `"v1"` and/or `"v2"`.
        stems: `"cifar"` and/or `"imagenet"`. Auto: by input size (CIFAR stem
            below 32 px, both up to 127 px, ImageNet stem from 128 px).
        optimizers: from `keras_resnet.constants.OPTIMIZERS`.
        learning_rate: a number, a (min, max) pair (log-sampled) for every
            optimizer, or a dict optimizer -> either. Auto:
            `DEFAULT_LEARNING_RATES`. None: `constants.DEFAULT_LEARNING_RATE`.
        weight_decay: as `learning_rate` (0 allowed as a fixed value). Auto:
            `DEFAULT_WEIGHT_DECAYS`. None: `constants.DEFAULT_WEIGHT_DECAY`.
        batch_sizes: batch sizes to choose from (applied in `HyperResNet.fit`).
        se_ratios, groups, shortcuts, drop_path_rates: the family's optional
            parts (`PARTS`), each None (off: the base spec's value, today's
            search) or the values to choose from, e.g. `se_ratios=(0, 1/16)`,
            `groups=(1, 4)` (bottleneck candidates only; see `candidate_spec`),
            `shortcuts=("projection", "avg")`, `drop_path_rates=(0, 0.1)`.
            The deep stem is one of `stems`.

    Example:

    >>> from keras_resnet.spec import get_spec
    >>> space = SearchSpace(widths=(0.5, 1.0), blocks=(1, 2), block_types="basic")
    >>> space.resolve(get_spec("resnet20"), (16, 16, 1)).num_stages
    (2, 4)
    """

    widths: Sequence[float] | float | None = DEFAULT_WIDTHS
    num_stages: Any = AUTO
    blocks: Any = AUTO
    block_types: Sequence[str] | str | None = BLOCKS
    versions: Sequence[str] | str | None = VERSIONS
    stems: Sequence[str] | str | None = AUTO
    optimizers: Sequence[str] | str | None = DEFAULT_OPTIMIZERS
    learning_rate: Any = AUTO
    weight_decay: Any = AUTO
    batch_sizes: Sequence[int] | int | None = DEFAULT_BATCH_SIZES
    se_ratios: Sequence[float] | float | None = None
    groups: Sequence[int] | int | None = None
    shortcuts: Sequence[str] | str | None = None
    drop_path_rates: Sequence[float] | float | None = None

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for name, (_, kind, ok, cast) in PARTS.items():
            value = getattr(self, name)
            set_(name, None if value is None else _parse_sorted_set(name, value, kind, ok, cast))
        set_(
            "widths",
            _parse_sorted_set("widths", self.widths, "numbers in (0, 16)", _is_width, float),
        )
        set_("num_stages", _parse_int_range("num_stages", self.num_stages, "MAX_STAGES"))
        set_("blocks", _parse_int_range("blocks", self.blocks, "MAX_STAGE_BLOCKS"))
        set_("block_types", _parse_choices("block_types", self.block_types, BLOCKS))
        set_("versions", _parse_choices("versions", self.versions, VERSIONS))
        set_("stems", _parse_choices("stems", self.stems, STEMS))
        set_("optimizers", _parse_choices("optimizers", self.optimizers, OPTIMIZERS))
        if self.block_types == AUTO or self.versions == AUTO or self.optimizers == AUTO:
            raise ValueError(
                "`block_types`, `versions` and `optimizers` have no 'auto' setting. "
                f"Received: block_types={self.block_types!r}, versions={self.versions!r}, "
                f"optimizers={self.optimizers!r}"
            )
        set_("learning_rate", _parse_per_optimizer("learning_rate", self.learning_rate, False))
        set_("weight_decay", _parse_per_optimizer("weight_decay", self.weight_decay, True))
        set_(
            "batch_sizes",
            _parse_sorted_set(
                "batch_sizes", self.batch_sizes, "positive integers", _is_batch_size, int
            ),
        )

    def resolve(self, base: ResNetSpec, image_shape: Sequence[int]) -> SearchSpace:
        """Replaces every None and "auto" with concrete values for `base` and the input.

        Raises:
            ValueError: a setting the input size rules out (the ImageNet stem
                below 32 px), or candidates deeper or wider than a `ResNetSpec`
                may be (`keras_resnet.spec.MAX_TOTAL_BLOCKS`, ...).
        """
        side = min(image_shape[0], image_shape[1])
        stems = self._resolve_stems(base, side)
        num_stages = self._resolve_num_stages(base, side, stems)
        blocks = self.blocks
        if blocks is not None:
            blocks = _derive_range("blocks", blocks, 1, max(s.blocks for s in base.stages))
        widths = self.widths or (base.width,)
        block_types = self.block_types or (base.block,)
        if self.groups and max(self.groups) > 1 and "bottleneck" not in block_types:
            raise ValueError(
                "`groups` apply to bottleneck blocks, and the space has none. "
                f"Received: groups={self.groups!r}, block_types={block_types!r}"
            )
        self._check_largest_candidate(base, num_stages, blocks, widths, block_types, stems)
        optimizers = self.optimizers or ("sgd",)
        return dataclasses.replace(
            self,
            widths=widths,
            num_stages=num_stages,
            blocks=blocks,
            block_types=block_types,
            versions=self.versions or (base.version,),
            stems=tuple(stems),
            optimizers=optimizers,
            learning_rate=_resolve_per_optimizer(
                self.learning_rate, optimizers, DEFAULT_LEARNING_RATES, DEFAULT_LEARNING_RATE
            ),
            weight_decay=_resolve_per_optimizer(
                self.weight_decay, optimizers, DEFAULT_WEIGHT_DECAYS, DEFAULT_WEIGHT_DECAY
            ),
            batch_sizes=self.batch_sizes or (64,),
        )

    def _resolve_stems(self, base: ResNetSpec, side: int) -> tuple[str, ...]:
        stems = self.stems
        if stems == AUTO:
            stems = (
                ("cifar",)
                if side < IMAGENET_STEM_MIN
                else ("cifar", "imagenet")
                if side < CIFAR_STEM_MAX
                else ("imagenet",)
            )
        elif stems is None:
            stems = (base.stem,)
        for stem in ("imagenet", "deep"):
            if stem in stems and side < IMAGENET_STEM_MIN:
                raise ValueError(
                    f"`stems` {stem!r} needs images of at least {IMAGENET_STEM_MIN} px (its "
                    f"stride-4 stem); these are {side} px. {received('stems', self.stems)}"
                )
        return stems

    def _resolve_num_stages(
        self, base: ResNetSpec, side: int, stems: Sequence[str]
    ) -> tuple[int, int]:
        n = len(base.stages)
        if self.num_stages is None:
            return n, n
        auto_low, auto_high = max(1, n - 1), n
        stem_stride = 1 if "cifar" in stems else 4
        while auto_high < n + 1 and side / (stem_stride * _total_stride(base, auto_high + 1)) >= 2:
            auto_high += 1
        return _derive_range("num_stages", self.num_stages, auto_low, auto_high)

    def _check_largest_candidate(
        self,
        base: ResNetSpec,
        num_stages: tuple[int, int],
        blocks: tuple[int, int] | None,
        widths: Sequence[float],
        block_types: Sequence[str],
        stems: Sequence[str],
    ) -> None:
        """The deepest candidate within MAX_TOTAL_BLOCKS, the widest a valid spec."""
        n = len(base.stages)
        deepest = [
            blocks[1] if blocks else base.stages[min(i, n - 1)].blocks for i in range(num_stages[1])
        ]
        if sum(deepest) > MAX_TOTAL_BLOCKS:
            raise ValueError(
                f"The deepest candidate of the search space would have {sum(deepest):,} blocks "
                f"({deepest}), more than {MAX_TOTAL_BLOCKS:,} "
                "(keras_resnet.spec.MAX_TOTAL_BLOCKS); lower `blocks` or `num_stages`. "
                f"Received: blocks={self.blocks!r}, num_stages={self.num_stages!r}"
            )
        try:  # the widest candidate: every spec limit (channels, strides) checked up front
            candidate_spec(
                base,
                width=max(widths),
                blocks=deepest,
                block="bottleneck" if "bottleneck" in block_types else block_types[0],
                version=base.version,
                stem=stems[0],
                **{
                    PARTS[n][0]: max(v)
                    for n in PARTS
                    if (v := getattr(self, n)) and n != "shortcuts"
                },
            )
        except ValueError as e:
            raise ValueError(
                f"The largest candidate of the search space (width {max(widths):g}, "
                f"{len(deepest)} stages) is not a valid spec: {str(e).splitlines()[0]}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))
