"""Export: a trained classifier to `.keras`, SavedModel, TFLite (four variants) and ONNX.

Every artifact is loaded back in its own runtime and compared with the Keras
model on held-out images before the export is accepted, and everything lands
atomically in one directory:

```
saved_models/<name>/
  model.keras                 Keras 3 file (loads with safe_mode=True)
  model_bf16.keras            opt-in `keras_bf16`: the same computing in bfloat16
  saved_model/                signatures serving_default (float32) and serving_uint8
  tflite/model_fp32.tflite    float32
  tflite/model_fp16.tflite    float16 weights (GPU delegate)
  tflite/model_dynamic.tflite int8 weights, float activations (dynamic range)
  tflite/model_int8.tflite    full integer: int8 input and output, calibrated
  model.onnx                  optional (`pip install keras3-resnet[onnx]`)
  labels.txt                  one class name a line, in output order
  manifest.json               per artifact: size, I/O, quantisation, verification, latency;
                              `fastest`: the fastest verified TFLite file here, and why
```

Conversions are TensorFlow's and Keras' own: the SavedModel is written by
`tf.saved_model.save` (not `keras.export.ExportArchive`, which stores every
weight twice: keras-team/keras#23553), the TFLite files come from
`tf.lite.TFLiteConverter.from_saved_model` on its `serving_default`
signature (so they keep its names: input `images`, output `probabilities`),
ONNX from `model.export(format="onnx")`. TFLite files are run with the
`ai_edge_litert` interpreter, ONNX with onnxruntime.

One module a concern: `options` (ExportOptions, formats, tolerances),
`saved_model`, `tflite`, `onnx`, `keras_bf16` (one a format), `verify`, `latency`,
`fastest` (the manifest's choice of artifact), `source`
(a run or a `.keras` file), `target` (the output directory, written atomically),
`report`, `export_utils` (shared helpers) and `core` (the writers' registry,
`export_model`, `export_run`).

Example:

>>> from keras_resnet.export import ExportOptions, export_run
>>> manifest = export_run("runs/demo", "saved_models/digits-resnet20")
>>> manifest["artifacts"]["tflite_int8"]["verification"]["top1_agreement"] >= 0.99
True
>>> export_run("runs/demo", "saved_models/tflite", options=ExportOptions(formats="tflite"))
"""

from keras_resnet.export.core import export_model, export_run
from keras_resnet.export.latency import keras_latency
from keras_resnet.export.onnx import ONNX_PACKAGES as ONNX_PACKAGES
from keras_resnet.export.onnx import onnx_available
from keras_resnet.export.options import (
    DEFAULT_FORMATS,
    DEFAULT_TOLERANCES,
    FORMATS,
    PREPROCESSING,
    TFLITE_VARIANTS,
    ExportOptions,
    parse_formats,
)
from keras_resnet.export.report import print_manifest, software_versions
from keras_resnet.export.source import load_model_file
from keras_resnet.export.target import LABELS as LABELS
from keras_resnet.export.target import MANIFEST as MANIFEST
from keras_resnet.export.target import PRODUCER as PRODUCER
from keras_resnet.export.target import check_output_dir
from keras_resnet.export.tflite import (
    convert_tflite,
    gpu_delegate_report,
    run_tflite,
    tflite_latency,
)
from keras_resnet.export.verify import ExportVerificationError

__all__ = [
    "DEFAULT_FORMATS",
    "DEFAULT_TOLERANCES",
    "FORMATS",
    "PREPROCESSING",
    "TFLITE_VARIANTS",
    "ExportOptions",
    "ExportVerificationError",
    "check_output_dir",
    "convert_tflite",
    "export_model",
    "export_run",
    "gpu_delegate_report",
    "keras_latency",
    "load_model_file",
    "onnx_available",
    "parse_formats",
    "print_manifest",
    "run_tflite",
    "software_versions",
    "tflite_latency",
]
