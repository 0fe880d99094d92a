"""Data-parallel training on one machine with tf.distribute (see docs/distributed.md).

Logical CPU devices must be configured before TensorFlow initialises, and
pytest's process already has TensorFlow running, so the training runs in a
fresh interpreter that prints one JSON line for the test to check. One
interpreter does both checks (each costs a TensorFlow start-up): Keras' own
`fit` under MirroredStrategy, and `keras_resnet.training.train` under it.

Several machines (MultiWorkerMirroredStrategy, our custom loop) are tested in
tests/test_multiworker.py.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import DIGITS_SPEC

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json

    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )

    import keras
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    x, y = load_digits(return_X_y=True)
    x = (x.reshape(-1, 8, 8, 1) / 16.0).astype("float32")
    y = y.astype("int32")
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(2000, seed=0).repeat().batch(64)
    held_out = tf.data.Dataset.from_tensor_slices((x[:512], y[:512])).batch(64)

    with strategy.scope():
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(16, 3, padding="same")(inputs)
        h = keras.layers.BatchNormalization(momentum=0.9)(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.Conv2D(32, 3, strides=2, padding="same")(h)
        h = keras.layers.BatchNormalization(momentum=0.9)(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        outputs = keras.layers.Dense(10, activation="softmax")(h)
        model = keras.Model(inputs, outputs)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )

    loss_before = model.evaluate(held_out, verbose=0)
    history = model.fit(train, epochs=2, steps_per_epoch=10, verbose=0)
    loss_after = model.evaluate(held_out, verbose=0)


    def max_replica_gap(variables):
        gap = 0.0
        for v in variables:
            copies = [np.asarray(c) for c in strategy.experimental_local_results(v.value)]
            gap = max([gap] + [float(np.max(np.abs(c - copies[0]))) for c in copies[1:]])
        return gap


    first = model.trainable_variables[0].value
    keras_fit = {
        "replicas": strategy.num_replicas_in_sync,
        "local_copies": len(strategy.experimental_local_results(first)),
        "devices": [c.device for c in strategy.experimental_local_results(first)],
        "train_loss": history.history["loss"],
        "loss_before": loss_before,
        "loss_after": loss_after,
        "trainable_gap": max_replica_gap(model.trainable_variables),
    }

    # keras_resnet's train() under the same strategy (it keeps model.fit there).
    import sys

    from keras_resnet.spec import ResNetSpec
    from keras_resnet.training import train

    spec = ResNetSpec.from_dict(json.loads(sys.argv[1]))
    metrics = train(spec, "digits", output_dir="run", epochs=4, image_size=8, warmup_epochs=0,
                    strategy=strategy, verbose=0)
    ours = {"test_accuracy": metrics["test_accuracy"], "params": metrics["params"]}
    print("RESULT " + json.dumps({"keras_fit": keras_fit, "train": ours}))
    """
)


def _run_script(tmp_path, source, *args, timeout=300):
    script = tmp_path / "script.py"
    script.write_text(source)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_fit_and_train(tmp_path):
    both = _run_script(tmp_path, MIRRORED_SCRIPT, DIGITS_SPEC.to_json())
    result = both["keras_fit"]

    assert result["replicas"] == 2
    assert result["local_copies"] == 2
    assert len(set(result["devices"])) == 2
    assert all("CPU" in d for d in result["devices"])
    # The training loss falls, and so does the loss on held-out data.
    first, last = result["train_loss"]
    assert last < first
    assert result["loss_after"] < result["loss_before"]
    # Gradients are all-reduced, so every replica holds the same trainable weights.
    # (BatchNormalization's moving statistics are per replica: not compared.)
    assert result["trainable_gap"] == 0.0
    # keras_resnet.training.train on two replicas: the global batch split, the run finished.
    assert both["train"]["params"] == DIGITS_SPEC.count_params(channels=1, classes=10)
    assert both["train"]["test_accuracy"] > 0.7
