"""Packaging for keras_resnet (distribution name ``keras3-resnet``).

The PyPI name ``keras-resnet`` belongs to an unrelated Keras-2 package that also
installs a ``keras_resnet`` module; the two must not be installed together.
"""

import importlib.metadata
import pathlib
import re
import sysconfig

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "keras_resnet" / "version.py").read_text(), re.M
).group(1)

# What a fresh install picks (tested up to 2.21). An installed TensorFlow only needs the lower
# bound: on Colab a newer preinstalled build must not be downgraded (that forces a restart).
TF_MIN = ">=2.18,<2.22"
TF_INSTALLED = ">=2.18"

# The one place the repository's address is kept (a placeholder until it is published). The
# notebooks install from it on Colab and link to it; tests/test_notebooks.py fails while any of
# them says otherwise, and notebooks/README.md tells how to change it.
REPOSITORY_URL = "https://github.com/keras-resnet/keras_resnet"


def _tensorflow_requirement() -> str:
    """Require the TensorFlow distribution that is already installed, if any.

    ``tensorflow``, ``tensorflow-cpu`` and ``tf-nightly`` all provide the
    ``tensorflow`` module. Requiring plain ``tensorflow`` where ``tensorflow-cpu``
    is installed (the Makefile does that on Linux x86-64 to halve the download)
    would pull a second 570 MB wheel over it; requiring ``tensorflow-cpu`` on
    Colab would overwrite its GPU build. So: keep whichever is there, at the
    version it is.
    """
    # pip builds in an isolated environment whose sys.path hides the target's
    # site-packages; sysconfig still names them, so look there explicitly.
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    installed = {
        d.metadata["Name"].lower().replace("_", "-")
        for d in importlib.metadata.distributions(path=sorted(paths))
    }
    for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly", "tf-nightly-cpu"):
        if dist in installed:
            return dist if dist.startswith("tf-") else f"{dist}{TF_INSTALLED}"
    return f"tensorflow{TF_MIN}"


# keras' ONNX exporter uses tf2onnx; onnxruntime verifies the file.
ONNX = ["tf2onnx>=1.16", "onnx>=1.16", "onnxruntime>=1.18"]
# Keras' JAX backend for the models, weights, fold and predict (tests/test_backends.py);
# 18 s to install here, 349 MB of jaxlib.
JAX = ["jax[cpu]>=0.4.34"]

setup(
    name="keras3-resnet",
    version=VERSION,
    description=(
        "ResNets for Keras 3: a validated stage spec, one functional builder, "
        "keras.applications drop-ins, Keras Tuner search, training and TFLite export."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    url=REPOSITORY_URL,
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_resnet", "keras_resnet.*"]),
    install_requires=[
        _tensorflow_requirement(),
        "keras>=3.8,<4",
        "tensorflow-datasets>=4.9",
        # tuning/_kt_internals.py uses keras_tuner.src internals (distributed mode, state
        # files): 1.4.x.
        "keras-tuner>=1.4.7,<1.5",
        # keras-tuner's chief/worker mode (gRPC); its protos need protobuf >= 3.20.
        "grpcio>=1.24.3,<2",
        "protobuf>=3.20.3,<8",
        "scipy>=1.9",  # keras-tuner's Bayesian optimisation
        "numpy",
        "safetensors>=0.4",  # reads torchvision/timm weight files (issue #16)
        # create_model(..., pretrained=True): timm's weights from the Hub, its cache, offline
        # mode and token; >=0.34 for the `hf download` command its errors suggest.
        "huggingface_hub>=0.34",
        "scikit-learn>=1.3",  # the offline digits dataset
        "matplotlib>=3.7",  # training curves, tuner Pareto plot
        "tensorboard",  # TF 2.21 no longer depends on it; training writes its logs
        "ai-edge-litert>=1.2",  # the LiteRT interpreter that verifies and times TFLite exports
    ],
    extras_require={
        "onnx": ONNX,
        "jax": JAX,
        "dev": [
            *ONNX,  # so the tests cover the optional ONNX export
            *JAX,  # so the tests cover another Keras backend
            # <9.2: pytest 9.2's structured node ids make pytest-xdist 3.8's `--dist
            # loadgroup` stop grouping, silently (pytest-dev/pytest-xdist#1386; fix in
            # #1388): every module fixture was then built on both workers, the two-worker
            # job twice. tests/test_upstream.py fails if grouping breaks again.
            "pytest>=8,<9.2",
            "pytest-timeout",
            "pytest-xdist>=3.5",  # the suite runs on both cores
            "hypothesis>=6.100",
            "ruff>=0.6",
            "pillow",  # tests write image folders
            # The notebooks are executed headless by the tests, in the ipykernel `python3` kernel.
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
        ],
    },
    entry_points={"console_scripts": ["keras-resnet=keras_resnet.cli:console_main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Framework :: Keras",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
