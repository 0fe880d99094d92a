"""The package as users meet it: import cost and the public surface."""

import json
import subprocess
import sys

import keras_resnet

# Keras itself already imports sklearn and matplotlib; count only what we add.
CHECK_IMPORTS = """
import json, sys
import keras
before = set(sys.modules)
import keras_resnet
heavy = ("tensorflow_datasets", "keras_tuner", "sklearn", "matplotlib", "keras_resnet.training",
         "keras_resnet.data", "keras_resnet.export", "keras_resnet.tuning", "keras_resnet.cli")
print(json.dumps(sorted(m for m in heavy if m in sys.modules and m not in before)))
"""


def test_import_stays_light():
    out = subprocess.run(
        [sys.executable, "-c", CHECK_IMPORTS], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_lazy_submodules_and_public_names():
    assert keras_resnet.data.load_dataset is not None  # imported on first use
    assert callable(keras_resnet.training.train)
    for name in keras_resnet.__all__:
        assert hasattr(keras_resnet, name), name
    assert keras_resnet.__version__.count(".") == 2


def test_the_command_parses_and_refuses_without_importing_tensorflow():
    script = (
        "import sys\n"
        "from keras_resnet import cli\n"
        "cli.build_parser().parse_args(['tune', '--output', 'x', '--stages', '2-3'])\n"
        "try:\n"
        "    cli.main(['train', '--output', 'x', '--epochs', 'many'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 2\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    assert out.stderr.strip().endswith("invalid int value: 'many' (see keras-resnet train --help)")
