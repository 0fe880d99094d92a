"""Test helpers shared by the test modules (import as `tests.helpers`)."""

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


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Runs `keras-resnet ARGV...` in-process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err
