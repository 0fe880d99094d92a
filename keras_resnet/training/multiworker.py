"""Training under `MultiWorkerMirroredStrategy`: a custom loop where `model.fit` cannot go.

Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy as soon as there are two
workers (docs/distributed.md: `_maybe_symbolic_build` and `reduce_per_replica`), so
`train()` runs this loop for that strategy; every other strategy keeps `fit`. It
uses the run's `TrainConfig` and the same compiled model, optimizer (schedule,
weight decay; a LossScaleOptimizer under mixed_float16) and loss (label
smoothing) as `fit`, and writes the same run directory through the same callbacks:

- each step is one `strategy.run` over a distributed dataset: the per-replica loss
  is its examples' sum divided by the global batch (`tf.nn.compute_average_loss`,
  the global count all-reduced, so a short last batch counts right), the optimizer
  sums the gradients over all replicas;
- loss and accuracy are summed over every worker (`strategy.reduce`) and
  BatchNormalization's moving statistics are averaged over the workers after each
  epoch, so every worker holds the same model, and the validation score is the
  chief's model's;
- checkpoints are `tf.train.CheckpointManager`'s: the chief writes
  `run_dir/backup/checkpoints/`, the other workers a temporary directory (TF's
  multi-worker tutorial), and on start the chief's restored state is broadcast to every
  worker, so killing any worker and restarting all of them resumes from the last
  finished epoch (a shared filesystem is not needed for that);
- `PreemptionCheckpointHandler` watches for SIGTERM on every worker: all of them
  average the BN statistics, save at the same step and stop with
  `TrainingPreemptedError`; the rerun resumes at that step;
- each epoch reads the pipeline's batches for that epoch (`train_for_epoch`: shuffled by
  the seed and the epoch alone), so a resumed run trains on what the uninterrupted run
  would have, and ends with its weights.

Only the chief (task `chief`, else worker 0) writes the run directory. Before any
collective op, the chief tells the other workers whether there is anything to
train (`Plan`): a run it refuses or finds finished stops them at once instead of
leaving them waiting. The entry points, the chief's `Run.fit` and the other workers'
`Run.train_as_worker` (`keras_resnet.training.run`), run this module's `Loop`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_resnet.training.cluster import Task, task_of
from keras_resnet.training.config import TrainConfig, count_steps_per_epoch

REFUSED, FINISHED, TRAIN = 0, 1, 2
CHECKPOINTS = "checkpoints"  # under the run's backup/: the chief's tf.train checkpoints
PREEMPTED_EXIT_CODE = 42  # TF's "restart me" code (PreemptionCheckpointHandler's default)
_SHARDING = tf.data.experimental.AutoShardPolicy


class TrainingPreemptedError(RuntimeError):
    """A worker got SIGTERM: every worker saved a checkpoint at the same step and stopped."""


def custom_loop_task(strategy: tf.distribute.Strategy) -> Task | None:
    """This process's `Task` when `strategy` needs the custom loop, else None (`fit`)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return task_of(strategy)
    return None


# --- the chief's word to the other workers ----------------------------------------------------


def _first_replica_only(value: tf.Tensor) -> tf.Tensor:
    """`value` on the cluster's first replica (the chief's first device), zeros elsewhere:
    summed over all replicas, it is a broadcast from there."""
    first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
    return tf.where(first, value, tf.zeros_like(value))


def _all_reduce_sum(strategy: tf.distribute.Strategy, value: int) -> int:
    """`value` of the chief's first replica, on every worker (one collective op)."""

    @tf.function
    def reduce():
        per_replica = strategy.run(lambda: _first_replica_only(tf.constant(value, tf.int32)))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return int(reduce())


class Plan:
    """The chief's word to the other workers: before training, and once it is done.

    The chief calls `send(TRAIN)` before building the model. Leaving the `with` block
    without having sent it sends FINISHED (nothing to train) or, with an exception,
    REFUSED; after a training, leaving it normally sends FINISHED once the run directory
    is complete (the workers wait for it), and with an exception sends nothing: the
    workers may be inside any collective op of the loop, and find the chief gone.
    """

    def __init__(self, strategy: tf.distribute.Strategy | None, task: Task | None):
        self.strategy, self.task, self.sent = strategy, task, None
        self.others = task is not None and len(task.workers) > 1

    def send(self, code: int) -> None:
        self.sent = code
        if self.others:
            _all_reduce_sum(self.strategy, code)

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, kind, *rest: Any) -> None:
        if self.sent is None:
            self.send(FINISHED if kind is None else REFUSED)
        elif self.sent == TRAIN and kind is None:
            self.send(FINISHED)


def receive_plan(strategy: tf.distribute.Strategy) -> int:
    return _all_reduce_sum(strategy, 0)


# --- data ----------------------------------------------------------------------------------


def shard_policy(dataset_name: str) -> tf.data.experimental.AutoShardPolicy:
    """How each worker takes its share of the data.

    In-memory digits: by DATA (every worker runs the seeded pipeline, keeps every
    n-th per-replica batch). Folders: by DATA too, since their files are read inside a
    map (there is no reader dataset for FILE sharding to split). TFDS: by FILE, each
    worker reading its own record files (TF's AUTO: FILE when there are at least as
    many files as workers, else DATA).
    """
    if dataset_name == "digits" or Path(dataset_name).expanduser().is_dir():
        return _SHARDING.DATA
    return _SHARDING.AUTO


def distribute(strategy, dataset: tf.data.Dataset, policy) -> tf.distribute.DistributedDataset:
    """`dataset`'s global batches split over the replicas: the same global batch as one machine."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


# --- the steps -----------------------------------------------------------------------------


def _per_example_loss(loss: keras.losses.Loss) -> keras.losses.Loss:
    """The compiled loss (label smoothing and all) without its reduction."""
    return type(loss).from_config({**loss.get_config(), "reduction": None})


class Steps:
    """The distributed train and evaluation steps of one compiled model.

    Each takes the next batch from a distributed iterator (inside the tf.function, so a
    short last batch needs no second trace) and returns `[loss sum, correct, examples]`
    summed over all replicas; the train step also adds them to the state's totals.
    """

    def __init__(self, strategy, net: keras.Model, label_mode: str, state: State):
        self.strategy, self.net, self.state = strategy, net, state
        self.loss = _per_example_loss(net.loss)
        self.accuracy = (
            keras.metrics.categorical_accuracy
            if label_mode == "categorical"
            else keras.metrics.sparse_categorical_accuracy
        )
        self.train = tf.function(self._train)
        self.evaluate = tf.function(self._evaluate)

    def _train(self, iterator) -> tf.Tensor:
        sums = self.strategy.run(self._train_replica, args=next(iterator))
        sums = self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)
        self.state.totals.assign_add(tf.cast(sums, tf.float64))
        self.state.step.assign_add(1)
        return sums

    def _evaluate(self, iterator) -> tf.Tensor:
        sums = self.strategy.run(self._evaluate_replica, args=next(iterator))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    def _sums(self, y, probs, per_example) -> tf.Tensor:
        correct = tf.reduce_sum(tf.cast(self.accuracy(y, probs), tf.float32))
        count = tf.cast(tf.shape(per_example)[0], tf.float32)
        return tf.stack([tf.reduce_sum(tf.cast(per_example, tf.float32)), correct, count])

    def _train_replica(self, x, y) -> tf.Tensor:
        net, optimizer = self.net, self.net.optimizer
        ctx = tf.distribute.get_replica_context()
        global_batch = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.shape(y)[0])
        with tf.GradientTape() as tape:
            probs = net(x, training=True)
            per_example = self.loss(y, probs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if net.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(net.losses))
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, net.trainable_variables)
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            grads = _skip_together(ctx, grads)
        optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return self._sums(y, probs, per_example)

    def _evaluate_replica(self, x, y) -> tf.Tensor:
        probs = self.net(x, training=False)
        return self._sums(y, probs, self.loss(y, probs))


def _skip_together(ctx: tf.distribute.ReplicaContext, grads: list) -> list:
    """Non-finite gradients on one replica make every replica's gradients non-finite.

    Keras' LossScaleOptimizer decides to skip a step from the local gradients, before
    they are all-reduced; across workers one could skip while another applies, and
    their weights would part. Poisoning all of them makes every worker skip the step and
    lower the scale alike.
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    not_finite = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(not_finite > 0, np.nan, 0.0)
    return [g + tf.cast(poison, g.dtype) for g in grads]


# --- variables across workers --------------------------------------------------------------


def all_reduce_assign(strategy, variables: list, op, local) -> Callable[[], None]:
    """A function that sets each variable to all-reduce(`op`) of `local(variable)` over the
    replicas (traced once, called as often as needed)."""
    if strategy.num_replicas_in_sync == 1:
        return lambda: None  # each variable is its own reduction: nothing to trace
    by_dtype: dict[Any, list] = {}
    for v in variables:
        by_dtype.setdefault(_collective_dtype(v.dtype), []).append(v)

    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        # One all-reduce per dtype: a collective packs its tensors into one.
        return {
            dtype.name: ctx.all_reduce(op, [tf.cast(local(v), dtype) for v in group])
            for dtype, group in by_dtype.items()
        }

    @tf.function
    def reduce():
        return strategy.run(replica_fn)

    def assign() -> None:
        reduced = reduce()
        for dtype, group in by_dtype.items():
            for v, value in zip(group, reduced[dtype.name], strict=True):
                v.assign(tf.cast(strategy.experimental_local_results(value)[0], v.dtype))

    return assign


def _collective_dtype(dtype: Any) -> tf.DType:
    # Collective ops reduce floats, int32 and int64; unsigned seed states go as int64.
    dtype = tf.as_dtype(dtype)
    return tf.int64 if dtype.is_unsigned or dtype == tf.bool else dtype


def _read(variable) -> tf.Tensor:
    # A bare variable read has no device in a replica function, and a collective needs one.
    return tf.identity(tf.convert_to_tensor(variable))


def broadcast_from_chief(strategy, variables: list) -> None:
    """Every replica gets the values of the chief's first one (a sum where only it adds)."""
    local = lambda v: _first_replica_only(_read(v))  # noqa: E731
    all_reduce_assign(strategy, variables, tf.distribute.ReduceOp.SUM, local)()


def statistics_averager(strategy, net: keras.Model) -> Callable[[], None]:
    """Averages BatchNormalization's moving statistics over the workers' shards."""
    floats = [v for v in net.non_trainable_variables if v.dtype.startswith("float")]
    return all_reduce_assign(strategy, floats, tf.distribute.ReduceOp.MEAN, _read)


def weights_digest(net: keras.Model) -> str:
    """sha256 of the trainable weights: equal on every worker after every step."""
    digest = hashlib.sha256()
    for weight in net.trainable_weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


# --- checkpoints ---------------------------------------------------------------------------


def resume_epoch(checkpoint_dir: Path) -> int | None:
    """The last finished epoch (from 0, as fit's BackupAndRestore says it) in the chief's
    latest checkpoint, or None."""
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest is None:
        return None
    epochs = int(tf.train.load_checkpoint(latest).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    return epochs - 1 if epochs else None


class State:
    """The checkpointed training state: model, optimizer, where the run is, this epoch's sums."""

    def __init__(self, strategy: tf.distribute.Strategy, net: keras.Model):
        with strategy.scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.totals = tf.Variable(tf.zeros(3, tf.float64), trainable=False, name="totals")
        self.checkpoint = tf.train.Checkpoint(
            model=net, optimizer=net.optimizer, epoch=self.epoch, step=self.step, totals=self.totals
        )
        self.net = net

    def variables(self) -> list:
        net = self.net
        return [
            *net.variables,
            *net.optimizer.variables,
            self.epoch,
            self.step,
            self.totals,
        ]

    def where(self) -> tuple[int, int]:
        """(finished epochs, steps done in the next one)."""
        return int(self.epoch.numpy()), int(self.step.numpy())

    def next_epoch(self, epoch: int) -> None:
        self.epoch.assign(epoch + 1)
        self.step.assign(0)
        self.totals.assign(tf.zeros(3, tf.float64))


class _Writer:
    """Saves the state each epoch: the chief into `checkpoint_dir`, the others into a temporary
    directory removed after each save (TF's tutorial: every worker must take part)."""

    def __init__(self, state: State, task: Task, checkpoint_dir: Path):
        self.state, self.task, self.checkpoint_dir = state, task, checkpoint_dir

    def save(self) -> None:
        if self.task.is_chief:
            manager = tf.train.CheckpointManager(
                self.state.checkpoint, str(self.checkpoint_dir), max_to_keep=1
            )
            manager.save()
            return
        with tempfile.TemporaryDirectory(prefix=f"keras_resnet-worker{self.task.id}-") as tmp:
            tf.train.CheckpointManager(self.state.checkpoint, tmp, max_to_keep=1).save()


@contextlib.contextmanager
def _preemption_handler(strategy, task: Task, state: State, writer: _Writer, before_save):
    """TF's PreemptionCheckpointHandler over the chief's checkpoints, or None on one machine.

    It restores the chief's latest checkpoint where a worker sees it; on SIGTERM every worker
    calls `before_save` and saves at the same step (`writer`), then raises
    `TrainingPreemptedError`. The process's own SIGTERM handler is put back afterwards.
    """
    checkpoint_dir = writer.checkpoint_dir
    if len(task.workers) < 2:
        checkpoint = tf.train.latest_checkpoint(str(checkpoint_dir))
        if checkpoint:
            state.checkpoint.restore(checkpoint).expect_partial()
        yield None
        return

    def stop() -> None:
        epoch, step = state.where()
        raise TrainingPreemptedError(
            f"preempted (SIGTERM) in epoch {epoch + 1} after step {step}: every worker saved "
            "a checkpoint; rerun the same command on every worker to resume"
        )

    def save() -> None:
        before_save()
        writer.save()

    previous = signal.getsignal(signal.SIGTERM)
    with strategy.scope():
        handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver,
            state.checkpoint,
            checkpoint_dir=str(checkpoint_dir),
            termination_config=tf.distribute.experimental.TerminationConfig(
                exit_fn=stop, save_fn=save
            ),
        )
    try:
        yield handler
    finally:
        del handler  # its __del__ stops its watcher threads
        signal.signal(signal.SIGTERM, previous)


# --- the loop ------------------------------------------------------------------------------


def _epoch_logs(train: np.ndarray, validation: np.ndarray) -> dict[str, float]:
    logs = {}
    for prefix, (loss_sum, correct, count) in (("", train), ("val_", validation)):
        if count:
            logs[f"{prefix}loss"] = float(loss_sum / count)
            logs[f"{prefix}accuracy"] = float(correct / count)
    return logs


def _count(dataset: tf.data.Dataset) -> int | None:
    batches = int(dataset.cardinality())
    return batches if batches >= 0 else None


class Loop:
    """Runs the epochs of one worker: train, sync, validate, callbacks, checkpoint."""

    def __init__(self, net, splits, config: TrainConfig, strategy, task: Task, verbose: int):
        self.net, self.config, self.strategy, self.task = net, config, strategy, task
        self.verbose = verbose
        self.state = State(strategy, net)
        self.steps = Steps(strategy, net, splits.label_mode, self.state)
        self.splits, self.policy = splits, shard_policy(splits.name)
        self._passes = None  # the pipeline's own reshuffled passes, where it has no epochs
        self.validation_data = distribute(strategy, splits.validation, self.policy)
        self.steps_per_epoch = count_steps_per_epoch(splits, config.batch_size)
        self.validation_steps = _count(splits.validation)
        self.resumed_from: int | None = None

    def run(self, callbacks: list, checkpoint_dir: Path) -> None:
        """Trains from wherever the chief's checkpoint says to the config's last epoch."""
        net, state = self.net, self.state
        with self.strategy.scope():  # its slots are mirrored like the weights
            net.optimizer.build(net.trainable_variables)
        average_statistics = statistics_averager(self.strategy, net)
        writer = _Writer(state, self.task, checkpoint_dir)
        # On SIGTERM the statistics are averaged before the save: the other workers' own are
        # not kept, and averaging is linear, so the epoch's end averages the same values.
        preemption = _preemption_handler(
            self.strategy, self.task, state, writer, average_statistics
        )
        with preemption as handler:
            broadcast_from_chief(self.strategy, state.variables())
            hooks = keras.callbacks.CallbackList(callbacks, model=net)
            keras.utils.set_random_seed(self.config.seed)
            net.stop_training = False
            hooks.on_train_begin()
            start, done = state.where()
            self.resumed_from = start - 1 if start else None
            if (start or done) and self.verbose:
                print(
                    f"[{self.task.describe()}] resuming epoch {start + 1} at step {done} of "
                    f"{self.steps_per_epoch}",
                    flush=True,
                )
            for epoch in range(start, self.config.epochs):
                began = time.perf_counter()
                hooks.on_epoch_begin(epoch)
                if not self._train_epoch(epoch, hooks, handler):
                    break
                trained = time.perf_counter() - began
                average_statistics()
                logs = _epoch_logs(state.totals.numpy(), self._validate())
                hooks.on_epoch_end(epoch, logs)
                if net.stop_training:
                    break
                state.next_epoch(epoch)
                writer.save()  # last, as fit's backup: everything else of the epoch is written
                self._report(epoch, logs, trained, time.perf_counter() - began)
            hooks.on_train_end()

    def _batches(self, epoch: int, done: int):
        """An iterator over `epoch`'s training batches after the first `done`.

        Each epoch's order is the pipeline's for that epoch alone (`train_for_epoch`), so a
        rerun after a kill or a preemption reads what the uninterrupted run would have.
        Repeated, with a fixed number of steps an epoch: a worker whose file shard runs out
        first wraps around instead of stepping with an empty batch (BatchNormalization
        would average nothing). With DATA sharding each epoch is exactly one pass. A
        pipeline without epochs (folders) is read as one stream of reshuffled passes,
        which a rerun starts over.
        """
        if self.splits.train_for_epoch is None:
            if self._passes is None:
                data = distribute(self.strategy, self.splits.train.repeat(), self.policy)
                self._passes = iter(data)
            return self._passes
        data = self.splits.train_for_epoch(epoch).repeat().skip(done)
        return iter(distribute(self.strategy, data, self.policy))

    def _train_epoch(self, epoch: int, hooks, handler) -> bool:
        """The epoch's remaining steps; False when a callback stopped the run."""
        _, done = self.state.where()
        batches = self._batches(epoch, done)
        for index in range(done, self.steps_per_epoch):
            if handler is None:
                sums = self.steps.train(batches)
            else:
                sums = handler.run(self.steps.train, batches)
            loss_sum, _, count = sums.numpy()
            hooks.on_train_batch_end(index, {"loss": loss_sum / max(count, 1.0)})
            if self.net.stop_training:
                return False
        return True

    def _validate(self) -> np.ndarray:
        total = np.zeros(3)
        batches = iter(self.validation_data)
        steps = range(self.validation_steps) if self.validation_steps is not None else None
        for _ in steps if steps is not None else iter(int, 1):
            try:
                total += self.steps.evaluate(batches).numpy()
            except tf.errors.OutOfRangeError:
                break
        return total

    def _report(self, epoch: int, logs: dict[str, float], trained: float, total: float) -> None:
        """One line an epoch, as fit's verbose=2, with the seconds of its training steps and
        of the whole epoch, and the digest of the weights (the same on every worker)."""
        if not self.verbose:
            return
        shown = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        print(
            f"Epoch {epoch + 1}/{self.config.epochs} [{self.task.describe()}] - "
            f"{total:.1f}s (train {trained:.2f}s) - {shown} - "
            f"weights sha256 {weights_digest(self.net)}",
            flush=True,
        )


# tf.train.CheckpointManager's names: its state file, each checkpoint's index and data
# shards, and the directory it writes a checkpoint's shards in before their rename.
_TF_CHECKPOINT = re.compile(r"checkpoint|ckpt-\d+(\.index|\.data-\d+-of-\d+|_temp)")


def remove_checkpoints(checkpoint_dir: Path) -> None:
    """The chief's checkpoints once training is done: the files of TensorFlow's checkpoint
    naming (`_TF_CHECKPOINT`) in `checkpoint_dir`, which the loop alone writes to; any other
    name stays."""
    if not checkpoint_dir.is_dir():
        return
    for path in checkpoint_dir.iterdir():
        if not _TF_CHECKPOINT.fullmatch(path.name):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)  # ckpt-N_temp: the shards of a cut save
        else:
            path.unlink(missing_ok=True)


def remove_empty_dirs(path: Path) -> None:
    """`path` and its subdirectories, where they hold nothing: the preemption handler makes
    `backup/workertemp_<id>/` on a worker for a save that a run without preemption never
    writes (the chief has removed its own `backup/` by then)."""
    if not path.is_dir():
        return
    for sub in sorted(path.rglob("*"), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()
