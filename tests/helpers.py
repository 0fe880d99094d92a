"""Test helpers shared by the test modules (import as `tests.helpers`)."""

import time

import numpy as np

from keras_resnet import cli
from keras_resnet.spec import ResNetSpec, StageSpec


def tiny_spec(**overrides) -> ResNetSpec:
    """Three small stages; every block/version/shortcut combination builds in well under 1 s."""
    base = dict(
        stages=(StageSpec(8, 1, 1), StageSpec(16, 2, 2), StageSpec(16, 1, 2)),
        block="basic",
        stem="cifar",
        stem_filters=8,
    )
    base.update(overrides)
    return ResNetSpec(**base)


# Small enough to train in seconds on 8x8 digits, big enough to learn them well.
DIGITS_SPEC = tiny_spec(
    stages=(StageSpec(16, 1, 1), StageSpec(32, 1, 2)), stem_filters=16, bn_momentum=0.9
)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Runs `keras-resnet ARGV...` in-process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def run_until(process, predicate, timeout: float, poll: float = 0.02) -> bool:
    """Polls `predicate()` until it holds (True) or `process` exits or `timeout` s pass (False).

    For the kill-and-resume tests: wait for a phase seen in the run's own files, then kill.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    return False


def random_weights(model, seed: int = 0, scale: float = 1.0) -> None:
    """Sets every weight to uniform [0.5, 1.5) * `scale`: positive, so BN variances stay valid,
    and non-trivial, so a wrong layout or a wrong fold shows in the outputs."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [(rng.uniform(0.5, 1.5, w.shape) * scale).astype("float32") for w in model.get_weights()]
    )
