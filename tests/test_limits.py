"""Every file the CLI reads is sized up before it is decoded (issue #26): one line, exit 2."""

import json
import struct
import zipfile
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet import _limits, build_resnet
from tests.helpers import run_cli, tiny_spec


def _png_header(path, width, height):
    """A PNG whose header claims width x height; its pixel data is a few bytes (never read)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("limits") / "tiny.keras"
    build_resnet(tiny_spec(), input_shape=(8, 8, 3), classes=3).save(path)
    return path


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path, capsys, model_file):
    """The 30000x30000 PNG of the issue: PIL's DecompressionBombError was a traceback."""
    big = _png_header(tmp_path / "big.png", 30000, 30000)
    code, out, err = run_cli(capsys, "predict", str(model_file), str(big))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is 30000x30000 = 900,000,000 pixels, over the limit of 89,478,485" in err
    assert f"Received: images='{big}'" in err and out == ""


def test_the_pixel_limit_is_a_flag(tmp_path, capsys, model_file):
    image = tmp_path / "image.png"
    keras.utils.save_img(image, np.full((10, 12, 3), 128, "uint8"))
    argv = ["predict", str(model_file), str(image), "--max-image-pixels"]
    code, _, err = run_cli(capsys, *argv, "119")
    assert code == 2 and "is 12x10 = 120 pixels, over the limit of 119" in err, err
    code, out, err = run_cli(capsys, *argv, "120", "--json")
    assert code == 0 and len(json.loads(out)[0]["predictions"]) == 3, err
    # Raised past PIL's own limit (89,478,485): PIL's header check does not refuse it.
    _limits.check_image(_png_header(tmp_path / "wide.png", 10000, 10000), 10**8, "images")


def test_a_keras_archive_that_inflates_a_thousandfold_is_refused(tmp_path, capsys, model_file):
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"\0" * 4 * 2**20)
    code, _, err = run_cli(capsys, "predict", str(bomb), str(tmp_path / "any.png"))
    assert code == 2 and "has a member (model.weights.h5) inflating" in err, err
    assert len(err.strip().splitlines()) == 1
    _limits.check_keras_archive(model_file, "model")  # a real one passes


def test_a_safetensors_header_and_a_json_file_over_their_limits(tmp_path, capsys):
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    out = tmp_path / "out.weights.h5"
    argv = ["convert-weights", str(huge), "--model", "resnet18", "--output", str(out)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "declare a 1,000,000,000,000-byte header in a 10-byte file" in err
    with open(huge, "r+b") as f:  # sparse: a 200 MB header costs no disk
        f.write((200 * 10**6).to_bytes(8, "little"))
        f.truncate(200 * 10**6 + 8)
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "declares a 200,000,000-byte header, over the limit of 100,000,000" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()

    spec = tmp_path / "spec.json"
    spec.write_text(" " * (_limits.MAX_JSON_BYTES + 1) + "{}")
    code, _, err = run_cli(capsys, "train", "--spec", str(spec), "--output", str(tmp_path / "r"))
    assert code == 2 and "over the limit of 16,777,216 bytes for JSON" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_image_headers_are_read_without_decoding(tmp_path, fmt):
    """Against PIL's reading of the same files, with an EXIF block before a JPEG's frame."""
    from PIL import Image

    from keras_resnet.data.headers import header_hw

    path = tmp_path / f"image.{fmt.lower()}"
    exif = Image.Exif()
    exif[0x010E] = "x" * 65_400  # ImageDescription: the frame header is past the first read
    extra = {"exif": exif} if fmt == "JPEG" else {}
    Image.new("RGB", (7, 5), (10, 20, 30)).save(path, fmt, **extra)
    assert fmt != "JPEG" or path.read_bytes().find(b"\xff\xc0") > 64 * 1024
    assert header_hw(path) == (5, 7)
    assert header_hw(_png_header(tmp_path / "big.png", 30000, 20000)) == (20000, 30000)


def _class_folders(root, big=None):
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            keras.utils.save_img(root / name / f"{i}.png", np.full((8, 8, 3), 40 * i, "uint8"))
    if big:
        _png_header(root / "b" / "big.png", *big)
    return root


def test_a_folder_with_an_image_over_the_limit_is_refused_before_decoding(tmp_path, capsys):
    from keras_resnet.data import load_dataset

    folder = _class_folders(tmp_path / "data", big=(30000, 30000))
    with pytest.raises(ValueError, match=r"holds .*big.png, 30000x30000 = 900,000,000 pixels"):
        load_dataset(str(folder))
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "resnet20", "--dataset", str(folder),
                           "--output", str(run), "--max-image-pixels", "10")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "0.png, 8x8 = 64 pixels, over the limit of 10" in err and not run.exists()


def test_the_split_folder_sample_is_bounded_by_its_jpeg_headers():
    from keras_resnet.data import load_dataset

    sample = str(Path(__file__).parent / "fixtures" / "cifar10_sample")
    with pytest.raises(ValueError, match=r"32x32 = 1,024 pixels, over the limit of 1,000"):
        load_dataset(sample, max_image_pixels=1000)
