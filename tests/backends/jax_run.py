"""What keras_resnet does under a backend other than TensorFlow, in one process.

Run by tests/test_backends.py as `KERAS_BACKEND=jax python -m tests.backends.jax_run DIR`
(Keras picks its backend once per process). DIR holds `tiny.weights.h5` and `input.npy`,
written by the TensorFlow side; the JSON on stdout is checked there. Every forward pass is a
`predict` (one XLA compilation per model): JAX compiles eager ops one by one, per shape.
"""

import json
import sys
from pathlib import Path

import numpy as np


def _refusals(model, tmp: Path) -> list:
    from keras_resnet.data import load_dataset
    from keras_resnet.export import export_model

    messages = []
    for call in (lambda: load_dataset("digits"), lambda: export_model(model, tmp / "e")):
        try:
            call()
            messages.append(None)
        except ValueError as e:
            messages.append(str(e))
    return messages


def main(tmp: Path) -> dict:
    import keras
    from PIL import Image

    import keras_resnet
    from keras_resnet.predict import predict
    from tests.helpers import tiny_spec

    x = np.load(tmp / "input.npy")
    model = keras_resnet.build_resnet(tiny_spec(), input_shape=x.shape[1:], classes=4)
    model.load_weights(tmp / "tiny.weights.h5")  # written by TensorFlow
    out = {"backend": keras.backend.backend(), "logits": model.predict(x, verbose=0).tolist()}
    folded = keras_resnet.fold_batchnorm(model)
    out["folded"] = folded.predict(x, verbose=0).tolist()
    out["folded_bn_layers"] = sum(
        type(layer).__name__ == "BatchNormalization" for layer in folded.layers
    )
    model.save(tmp / "jax.keras")
    image = (x[0] * 255).clip(0, 255).astype(np.uint8)
    Image.fromarray(image).save(tmp / "x.png")
    top = predict(tmp / "jax.keras", [tmp / "x.png"], top_k=1)[0]["predictions"][0]
    out["predict"] = [top["class"], model.predict(image[None] / 255.0, verbose=0).tolist()[0]]

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    start = [w.copy() for w in model.get_weights()]
    history = model.fit(x, np.arange(len(x)) % 4, epochs=2, batch_size=4, verbose=0)
    out["fit_losses"] = history.history["loss"]
    out["fit_changed"] = sum(
        not np.array_equal(a, b) for a, b in zip(start, model.get_weights(), strict=True)
    )
    out["weights"] = len(start)
    out["refusals"] = _refusals(model, tmp)
    return out


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
