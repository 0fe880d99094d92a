"""`TF_CONFIG`: read it, check it before anything is built, and say which worker this is.

`MultiWorkerMirroredStrategy` reads the cluster from the `TF_CONFIG` environment
variable (JSON). A mistake there shows up late and far away: malformed JSON is
ignored by TensorFlow's resolver, a wrong index joins the wrong slot, an address
of another machine or a port still held by an earlier worker fails inside gRPC.
`read_tf_config` turns each into one `ValueError` line naming `TF_CONFIG`, before
TensorFlow starts its server. It imports no TensorFlow.

Example (two machines; only `task.index` differs between them):

    TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]},
                "task": {"type": "worker", "index": 0}}'
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from keras_resnet._checks import is_int

ENV = "TF_CONFIG"
# MultiWorkerMirroredStrategy trains on "chief" and "worker" tasks; "ps" and "evaluator"
# belong to other strategies.
ROLES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in the cluster.

    Attributes:
        type: "chief" or "worker".
        index: the index within its type.
        workers: every training task's address, the chief first (TF's order).
        address: this task's "host:port".
    """

    type: str
    index: int
    workers: tuple[str, ...]
    address: str

    @property
    def id(self) -> int:
        """0 for the chief (the "chief" task, else worker 0), then 1, 2, ... (TF's numbering)."""
        return self.workers.index(self.address)

    @property
    def is_chief(self) -> bool:
        return self.id == 0

    def describe(self) -> str:
        role = "chief" if self.is_chief else "worker"
        return (
            f"{role}: task {self.type} {self.index} at {self.address}, "
            f"worker {self.id + 1} of {len(self.workers)}"
        )


def _error(reason: str, value: Any) -> ValueError:
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > 200:
        text = text[:197] + "..."
    return ValueError(f"`{ENV}` {reason}. Received: {ENV}={text!r}")


def parse_tf_config(text: str | None) -> Task:
    """The `Task` of a `TF_CONFIG` text; anything wrong is one ValueError line.

    Example:
        >>> parse_tf_config('{"cluster": {"worker": ["a:1", "b:1"]},'
        ...                 ' "task": {"type": "worker", "index": 1}}').describe()
        'worker: task worker 1 at b:1, worker 2 of 2'
    """
    if text is None or not text.strip():
        raise ValueError(
            f"`{ENV}` is not set: multi-worker training reads the cluster and this worker's "
            f"task from it (see docs/distributed.md). Received: {ENV}=None"
        )
    try:
        config = json.loads(text)
    except ValueError as e:
        raise _error(f"is not valid JSON ({e})", text) from None
    if not isinstance(config, dict):
        raise _error("must be a JSON object with `cluster` and `task`", text)
    cluster = _cluster(config, text)
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise _error('has no `task` with a `type` and an `index` (e.g. {"type": "worker", '
                     '"index": 0})', text)  # fmt: skip
    kind, index = task["type"], task["index"]
    if kind not in ROLES:
        raise _error(f"task type must be one of {list(ROLES)} (got {kind!r})", text)
    if kind not in cluster:
        raise _error(f"task type {kind!r} is not in the cluster", text)
    if not is_int(index) or not 0 <= index < len(cluster[kind]):
        raise _error(
            f"task index must be in [0, {len(cluster[kind])}) for the {len(cluster[kind])} "
            f"{kind} address(es) of the cluster (got {index!r})",
            text,
        )
    workers = tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))
    return Task(kind, int(index), workers, cluster[kind][index])


def _cluster(config: dict, text: str) -> dict[str, list[str]]:
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise _error('has no `cluster` (e.g. {"worker": ["host1:port", "host2:port"]})', text)
    unknown = sorted(set(cluster) - set(ROLES))
    if unknown:
        raise _error(
            f"cluster has {unknown}: multi-worker training has only {list(ROLES)} tasks", text
        )
    if len(cluster.get("chief", [])) > 1:
        raise _error("cluster has more than one chief", text)
    seen: set[str] = set()
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise _error(f"cluster {kind!r} must be a non-empty list of 'host:port'", text)
        for address in addresses:
            _check_address(address, text)
            if address in seen:
                raise _error(f"cluster lists {address!r} twice", text)
            seen.add(address)
    return cluster


def _split_address(address: str) -> tuple[str, int | None]:
    host, _, port = address.rpartition(":")
    ok = host and port.isdigit() and 0 < int(port) < 65536
    return host.removeprefix("[").removesuffix("]"), int(port) if ok else None


def _check_address(address: Any, text: str) -> None:
    if not isinstance(address, str) or _split_address(address)[1] is None:
        raise _error(f"cluster address {address!r} is not 'host:port'", text)


def check_this_host(task: Task, text: str) -> None:
    """This task's host must resolve, and its port must be free here (TF's server binds it).

    A host that resolves to an address of another machine is allowed: behind NAT or a
    Kubernetes service the address others dial is not an interface of this one.
    """
    host, port = _split_address(task.address)
    try:
        socket.getaddrinfo(host, port)
    except OSError as e:
        raise _error(
            f"task {task.type} {task.index} is {task.address!r}, whose host does not resolve "
            f"here ({e.strerror or e})",
            text,
        ) from None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # SO_REUSEADDR as gRPC sets it: only a listening socket makes the bind fail,
        # not the TIME_WAIT connections a killed worker leaves behind.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            raise _error(
                f"task {task.type} {task.index} is {task.address!r}, but port {port} is in "
                "use on this machine (a worker of an earlier run still alive?)",
                text,
            ) from None


def read_tf_config(environ: Mapping[str, str] | None = None) -> Task:
    """`TF_CONFIG` of `environ` (default `os.environ`) parsed and checked against this machine.

    Raises:
        ValueError: one line naming `TF_CONFIG`: unset, malformed JSON, no cluster or
            task, a task that is not in the cluster, a host that does not resolve, a
            port in use.
    """
    text = (os.environ if environ is None else environ).get(ENV)
    task = parse_tf_config(text)
    check_this_host(task, text)
    return task


LOCAL = Task("worker", 0, ("localhost",), "localhost")
"""One worker alone (a MultiWorkerMirroredStrategy without TF_CONFIG)."""


def task_of(strategy: Any) -> Task:
    """The `Task` of a `MultiWorkerMirroredStrategy`, from its cluster resolver."""
    resolver = strategy.cluster_resolver
    cluster = resolver.cluster_spec().as_dict()
    if not cluster:
        return LOCAL
    workers = tuple(cluster.get("chief", [])) + tuple(cluster.get("worker", []))
    address = cluster[resolver.task_type][resolver.task_id]
    return Task(resolver.task_type, int(resolver.task_id), workers, address)


def _listening(address: str, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at "host:port"."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def join_cluster(task: Task) -> Any:
    """`MultiWorkerMirroredStrategy()`, joined so that this process still answers signals.

    The strategy's constructor waits until every worker has registered with TensorFlow's
    coordination service, which the chief runs. A worker killed before it registered is
    indistinguishable from one not yet started, so the others wait, and running its same
    command again lets the job go on (measured: `python -m benchmarks.interrupts --command
    multiworker`). The chief's wait answers
    signals; another worker's does not: it waits in C++ holding the GIL, where no Python
    signal handler (and no other Python thread) runs, so Ctrl-C did nothing there. So
    another worker first waits in Python until the chief's server accepts connections,
    and only then builds the strategy, whose registration then takes milliseconds.
    """
    import time

    import tensorflow as tf

    chief = task.workers[0]
    if not task.is_chief and not _listening(chief):
        print(
            f"keras-resnet train: waiting for the chief at {chief} (start every "
            "worker with the same command; a worker stopped before it joined continues the "
            "job when its command is run again)",
            flush=True,
        )
        while not _listening(chief):
            time.sleep(0.2)  # signal handlers run here
    return tf.distribute.MultiWorkerMirroredStrategy()
