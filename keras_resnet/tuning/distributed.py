"""keras-tuner's chief/worker mode: the environment, the chief's server, the worker's client.

keras-tuner is configured for it only by environment variables
(`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`), which
`tuner_environment` sets from `role`, `oracle_address` and `tuner_id`. The chief
runs the oracle over gRPC and writes the outputs; workers train. The oracle has
no authentication, so a chief listens on loopback only unless
`allow_remote_oracle`; a worker gives up on its chief after `oracle_timeout`
seconds, at start-up and on every call (keras-tuner's own client waits an hour).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import keras_tuner as kt

from keras_resnet._checks import check_choice, check_positive_number, received
from keras_resnet.constants import DEFAULT_ORACLE_TIMEOUT, ROLES
from keras_resnet.tuning._kt_internals import oracle_chief, protos

TUNER_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
TUNER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# keras-tuner's project directory holds `oracle.json`, one `<tuner id>.json` per tuner
# (`tuner0` when not distributed, `chief`) and `trial_<id>/`; any id containing "chief"
# makes keras-tuner treat the process as the chief (keras_tuner.src.distribute.utils).
RESERVED_TUNER_IDS = ("oracle", "tuner0")


class OracleUnreachableError(kt.errors.FatalRuntimeError):
    """A worker got no answer from its chief in time.

    A keras-tuner `FatalError`, so keras-tuner's search loop stops on it
    instead of recording the trial as failed and asking the chief again.
    """


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Where a process stands in a distributed search; checked when made.

    Attributes:
        role: None (one process), `"chief"` (serves the oracle, trains
            nothing, writes the outputs when all trials are done) or
            `"worker"` (trains trials the chief hands out).
        oracle_address: the chief's `HOST:PORT` (with `role`). A chief listens
            on loopback addresses only (127.0.0.0/8, ::1, localhost) unless
            `allow_remote_oracle`.
        tuner_id: a worker's id, 1-64 characters from `[A-Za-z0-9_-]`, none of
            keras-tuner's names (`oracle`, `tuner0`, containing `chief`,
            starting with `trial_`); a worker restarted with the same id reruns
            the trial it was given.
        oracle_timeout: seconds a worker waits for the chief to answer, when it
            starts and on every later call; then it raises
            `OracleUnreachableError` ("cannot reach the chief at HOST:PORT
            within N s").
        allow_remote_oracle: let a chief listen on a non-loopback address.
            keras-tuner's gRPC oracle has no authentication and no encryption:
            anyone who reaches the port can read and steer the search.

    Example:

    >>> ClusterOptions("worker", "127.0.0.1:8000", tuner_id="gpu0").is_worker
    True
    """

    role: str | None = None
    oracle_address: str | None = None
    tuner_id: str | None = None
    oracle_timeout: float = DEFAULT_ORACLE_TIMEOUT
    allow_remote_oracle: bool = False

    def __post_init__(self) -> None:
        check_positive_number("oracle_timeout", self.oracle_timeout)
        check_distributed(
            self.role, self.oracle_address, self.tuner_id, False, self.allow_remote_oracle
        )

    @property
    def is_worker(self) -> bool:
        return self.role == "worker"

    def environment(self) -> contextlib.AbstractContextManager[None]:
        """keras-tuner's environment variables for this role (`tuner_environment`)."""
        return tuner_environment(self.role, self.oracle_address, self.tuner_id)


# --- checks and environment -----------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) or localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_tuner_id(tuner_id: Any) -> None:
    """A worker's id names its files (`<id>.json` in keras-tuner's project, our lock)."""
    if not isinstance(tuner_id, str) or not TUNER_ID_PATTERN.fullmatch(tuner_id):
        raise ValueError(
            "A worker's `tuner_id` must be 1-64 characters from A-Z, a-z, 0-9, '_' and '-' "
            "(unique, stable across restarts). "
            f"{received('tuner_id', tuner_id)}"
        )
    lowered = tuner_id.lower()  # case-insensitive file systems would collide too
    if lowered in RESERVED_TUNER_IDS or "chief" in lowered or lowered.startswith("trial_"):
        raise ValueError(
            "A worker's `tuner_id` may not be one of keras-tuner's own names in the project "
            f"directory ({', '.join(map(repr, RESERVED_TUNER_IDS))}, anything containing "
            f"'chief' or starting with 'trial_'). {received('tuner_id', tuner_id)}"
        )


def _split_address(oracle_address: Any) -> tuple[str, str]:
    """HOST:PORT, port 1-65535 (an IPv6 host may come with or without brackets)."""
    ok = isinstance(oracle_address, str) and ":" in oracle_address
    if ok:
        host, port = oracle_address.rsplit(":", 1)
        ok = bool(host) and port.isdigit() and 0 < int(port) < 65536
    if not ok:
        raise ValueError(
            "`oracle_address` must be HOST:PORT (the chief's address, port 1-65535). "
            f"{received('oracle_address', oracle_address)}"
        )
    return host, port


def check_distributed(
    role: Any,
    oracle_address: Any,
    tuner_id: Any,
    overwrite: bool,
    allow_remote_oracle: bool = False,
) -> None:
    """The distributed settings of a search, checked before anything is read or written."""
    if not isinstance(allow_remote_oracle, bool):
        raise ValueError(
            "`allow_remote_oracle` must be a bool. "
            f"{received('allow_remote_oracle', allow_remote_oracle)}"
        )
    if role is None:
        if oracle_address is not None:
            raise ValueError(
                "`oracle_address` needs `role` ('chief' or 'worker'). "
                f"{received('oracle_address', oracle_address)}"
            )
        return
    check_choice("role", role, ROLES)
    host, _ = _split_address(oracle_address)
    if role == "chief" and not allow_remote_oracle and not is_loopback(host):
        raise ValueError(
            f"The chief would serve the oracle on {host}, not a loopback address, and its gRPC "
            "port accepts unauthenticated connections from anyone who can reach it; pass "
            "allow_remote_oracle=True (--allow-remote-oracle) on a trusted private network. "
            f"{received('oracle_address', oracle_address)}"
        )
    if role == "worker":
        check_tuner_id(tuner_id)
        if overwrite:
            raise ValueError(
                "Only the chief may overwrite the search (a worker would delete the shared "
                "project). Received: overwrite=True"
            )


@contextlib.contextmanager
def tuner_environment(
    role: str | None, oracle_address: str | None, tuner_id: str | None
) -> Iterator[None]:
    """keras-tuner's distributed mode is configured only by environment variables."""
    saved = {name: os.environ.get(name) for name in TUNER_ENV}
    if role is not None:
        host, port = oracle_address.rsplit(":", 1)
        os.environ["KERASTUNER_TUNER_ID"] = "chief" if role == "chief" else tuner_id
        # keras-tuner and gRPC join IP and port with ":": an IPv6 host keeps brackets.
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        os.environ["KERASTUNER_ORACLE_IP"] = host
        os.environ["KERASTUNER_ORACLE_PORT"] = port
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def oracle_target() -> str:
    """The chief's address as keras-tuner dials and serves it (set by `tuner_environment`)."""
    return f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"


# --- the worker's side ----------------------------------------------------------------------


def _unreachable(target: str, timeout: float) -> OracleUnreachableError:
    return OracleUnreachableError(
        f"cannot reach the chief at {target} within {timeout:g} s: start the chief first "
        "(same --output, --role chief) or wait longer with --oracle-timeout (oracle_timeout)."
    )


def wait_for_chief(timeout: float) -> None:
    """Waits until the chief's gRPC port answers, at most `timeout` seconds."""
    target = oracle_target()
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise _unreachable(target, timeout) from None
    finally:
        channel.close()


class _BoundedStub:
    """keras-tuner's gRPC stub with `timeout` seconds per call instead of its hour."""

    def __init__(self, stub: Any, timeout: float, target: str):
        self._stub, self._timeout, self._target = stub, timeout, target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            try:
                return method(request, **{**kwargs, "timeout": self._timeout})
            except grpc.RpcError as e:
                if e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    raise _unreachable(self._target, self._timeout) from None
                raise

        return call


class PatientClient:
    """A worker's oracle client: waits a second when the chief says IDLE, and gives
    every call to the chief `timeout` seconds.

    keras-tuner's worker loop asks again at once, which on a small machine
    spins a core while Hyperband waits for a round to finish elsewhere. Its
    client waits up to an hour per call for a chief that is gone.
    """

    def __init__(self, client: Any, timeout: float):
        self._client = client
        # Private (_kt_internals.PRIVATE_ATTRIBUTES): every call goes through `stub`.
        client.stub = _BoundedStub(client.stub, timeout, oracle_target())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_trial(self, tuner_id: str):
        trial = self._client.create_trial(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(1.0)
        return trial


# --- the chief's side -----------------------------------------------------------------------


def serve(oracle: kt.Oracle, poll_seconds: float = 0.5) -> None:
    """The chief: serves the oracle over gRPC until every worker has been told to stop.

    keras-tuner's own `start_server` serves the same `OracleServicer`, but
    polls only every 20 s once the first worker stopped and never stops the
    server.
    """
    address = oracle_target()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"The chief cannot listen on {address} (in use or not this host).")
    server.start()
    try:
        # Private (_kt_internals.PRIVATE_ATTRIBUTES): `stop_triggered`.
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=5).wait()
    if getattr(oracle, "failure", None):
        raise RuntimeError(oracle.failure)
