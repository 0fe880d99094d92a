"""What the figures ran on: host, CPU, memory, accelerators, thread settings, versions, load."""

from __future__ import annotations

import os
import platform
import re
import socket
from pathlib import Path
from typing import Any


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpuinfo() -> dict[str, Any]:
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if model:
        info["model"] = model.group(1).strip()
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    if flags:
        # What decides fp32 and int8 kernel speed (VNNI: int8 dot products).
        wanted = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16")
        have = set(flags.group(1).split())
        info["flags"] = [f for f in wanted if f in have] + sorted(
            f for f in have if f.startswith("amx")
        )
    cores = set()
    for block in text.split("\n\n"):
        ids = dict(re.findall(r"^(physical id|core id)\s*:\s*(\d+)", block, re.M))
        if len(ids) == 2:
            cores.add((ids["physical id"], ids["core id"]))
    if cores:
        info["physical_cores"] = len(cores)
    return info


def machine() -> dict[str, Any]:
    """Host, CPU, memory, accelerators and the thread settings the figures ran with."""
    import tensorflow as tf

    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append({"name": details.get("device_name", gpu.name), **details})
    return {
        "host": socket.gethostname(),
        "cpu": _cpuinfo(),
        "logical_cores": os.cpu_count(),
        "ram_gib": round(pages * page_size / 2**30, 1),
        "os": platform.platform(),
        "gpus": [{k: str(v) for k, v in g.items()} for g in gpus],
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "onednn_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }


def versions() -> dict[str, str | None]:
    from keras_resnet.export import software_versions

    return software_versions()
