"""`Run`: what one training run is, and its steps: fit (resuming) and evaluate.

`train` checks its arguments, loads the data and makes a `Run`; from there the run
carries its model (a spec or a built model), splits, config, run directory and
record (run.json), and the `model.fit` path, the multi-worker loop (the chief's and
the other workers') and the evaluation read them from it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_resnet._io import check_fingerprint, locked_run_dir, write_json
from keras_resnet._signals import deferred
from keras_resnet.data import DatasetSplits
from keras_resnet.errors import TrainingDivergedError
from keras_resnet.spec import ResNetSpec
from keras_resnet.training import backup, multiworker
from keras_resnet.training.callbacks import (
    AtomicCheckpoint,
    Backup,
    History,
    StopOnDivergence,
    StopOnSignal,
    Throughput,
)
from keras_resnet.training.cluster import Task
from keras_resnet.training.config import TrainConfig, compile_model, count_steps_per_epoch
from keras_resnet.training.run_dir import (
    BEST,
    CURVES,
    HISTORY,
    LAST,
    METRICS,
    RUN_CONFIG,
    discard_corrupt_checkpoints,
    finished_metrics,
    plot_curves,
    read_history,
    remove_stale_temp_files,
)
from keras_resnet.training.tracing import build_training_state


@dataclasses.dataclass
class Run:
    """One training run: what `train` resolved, and where it writes.

    Attributes:
        spec: the spec the model is built from, or None when `built_model` is given.
        built_model: a built `keras.Model` to train instead of a spec's, or None.
        splits: the loaded data, at the model's input size.
        config: the run's `TrainConfig`.
        run_dir: the run directory.
        record: what run.json holds: the fingerprint, the precision, the versions, and
            once trained its status and `trained` facts (`fit` adds them; a run trained
            earlier brings its own, read back).
        strategy: the `tf.distribute.Strategy`.
        task: this process's `Task` under the multi-worker loop, None with `model.fit`.
        verbose: Keras' fit verbosity ("auto": progress bars on a terminal, else one line
            per epoch).
        callbacks: the caller's callbacks, after the run's own and before its backup.
        started: `time.perf_counter()` when `train` was called.
    """

    spec: ResNetSpec | None
    built_model: keras.Model | None
    splits: DatasetSplits
    config: TrainConfig
    run_dir: Path
    record: dict[str, Any]
    strategy: tf.distribute.Strategy
    task: Task | None = None
    verbose: int | str = "auto"
    callbacks: list[keras.callbacks.Callback] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @property
    def backup_dir(self) -> Path:
        return self.run_dir / "backup"

    def compile(self) -> keras.Model:
        """The model, built and compiled as the run trains it, in its strategy and precision."""
        policy = self.record["precision"]["dtype_policy"]
        return compile_model(
            self.spec, self.built_model, self.splits, self.config, self.strategy, policy
        )

    def complete(self, plan: multiworker.Plan) -> tuple[dict[str, Any], bool]:
        """Brings the run directory to a finished run: (the metrics, whether this call
        evaluated them, False for a run found finished).

        A run whose training finished earlier is only evaluated; any other trains
        (resuming) first.
        """
        run_dir, fingerprint = self.run_dir, self.record["fingerprint"]
        check_fingerprint(run_dir, RUN_CONFIG, fingerprint, kind="run")
        with locked_run_dir(run_dir):
            # Checked again under the lock: another process may have started this run meanwhile.
            previous = check_fingerprint(run_dir, RUN_CONFIG, fingerprint, kind="run") or {}
            remove_stale_temp_files(run_dir)
            finished = finished_metrics(run_dir)
            if finished is not None:
                print(f"{run_dir} is a finished run; nothing to do.")
                return finished, False
            if previous.get("status") == "trained":
                self.record, best = previous, None
                print(f"{run_dir}: training finished earlier; evaluating its best.keras.")
            else:
                write_json(run_dir / RUN_CONFIG, {**self.record, "status": "training"})
                best = self.fit(plan)
            return self.evaluate(best), True

    def fit(self, plan: multiworker.Plan) -> keras.Model | None:
        """Trains (resuming from the backup), then records in run.json that training finished.

        With `model.fit`, or with the multi-worker loop when the run has a `task` (`plan`
        tells the other workers to train along). Returns, when the trained model holds
        best.keras's weights (its last epoch was the best) outside any distribution
        strategy, that model, else None.
        """
        config, run_dir, task = self.config, self.run_dir, self.task
        if task is not None:
            plan.send(multiworker.TRAIN)  # the other workers build the model along with us
            keras.utils.set_random_seed(config.seed)  # the chief's initial weights go to all
        discarded = discard_corrupt_checkpoints(run_dir, trained=False)
        net = self.compile()
        if task is None:
            steps = count_steps_per_epoch(self.splits, config.batch_size)
            resumed_from = backup.restore(net, run_dir, run_dir / LAST, steps)
        else:
            resumed_from = multiworker.resume_epoch(self.backup_dir / multiworker.CHECKPOINTS)
        throughput = Throughput(config.batch_size)
        divergence = StopOnDivergence()
        fresh_best = BEST in discarded or not resumed_from
        best_checkpoint, last_checkpoint = _checkpoints(run_dir, divergence, fresh_best)
        callbacks = [
            divergence,  # first: the checkpoints below skip an epoch it flags
            History(run_dir / HISTORY),
            best_checkpoint,
            last_checkpoint,
            keras.callbacks.TensorBoard(str(run_dir / "logs"), profile_batch=0),
            throughput,
            *self.callbacks,
        ]
        if task is None:
            self._fit_keras(net, callbacks, divergence, resumed_from)
        else:
            self._fit_custom_loop(net, callbacks)
        if divergence.epoch is not None:
            raise TrainingDivergedError(
                f"training diverged in epoch {divergence.epoch + 1} ({divergence.reason}); "
                f"{run_dir} keeps the checkpoints of the last good epoch. Try a lower learning "
                f"rate. Received: learning_rate={config.lr}, weight_decay={config.wd}"
            )
        self._record_trained(net, resumed_from, throughput.images_per_second)
        holds_best = (
            task is None
            and best_checkpoint.saved_epoch == config.epochs - 1
            and net.distribute_strategy is tf.distribute.get_strategy()
        )
        return net if holds_best else None

    def _fit_verbosity(self) -> int:
        if self.verbose == "auto":
            return 1 if sys.stdout.isatty() else 2
        return self.verbose

    def _fit_keras(self, net, callbacks: list, divergence, resumed_from: int | None) -> None:
        """`model.fit` from the epoch after `resumed_from`, backing up each epoch."""
        # Last, so the backup of an epoch is written after everything else of it (and
        # a signal noted meanwhile is raised after that).
        callbacks = [*callbacks, Backup(self.backup_dir, divergence), StopOnSignal()]
        keras.utils.set_random_seed(self.config.seed)
        with deferred():  # a signal stops fit between two steps, not inside one
            net.fit(
                self.splits.train,
                validation_data=self.splits.validation,
                epochs=self.config.epochs,
                initial_epoch=resumed_from or 0,
                callbacks=callbacks,
                verbose=self._fit_verbosity(),
                shuffle=False,  # the train pipeline shuffles itself (seeded, every epoch)
            )

    def _fit_custom_loop(self, net: keras.Model, callbacks: list) -> None:
        """The chief's multi-worker loop (after `complete` checked, locked and sent TRAIN)."""
        verbose = self._fit_verbosity()
        loop = multiworker.Loop(net, self.splits, self.config, self.strategy, self.task, verbose)
        loop.run(callbacks, self.backup_dir / multiworker.CHECKPOINTS)
        if verbose:
            digest = multiworker.weights_digest(net)
            print(f"[{self.task.describe()}] done; weights sha256 {digest}", flush=True)

    def _record_trained(self, net, resumed_from: int | None, images_per_second) -> None:
        """run.json says training finished (then the backup goes: it is no longer needed)."""
        self.record = {
            **self.record,
            "status": "trained",
            "trained": {
                "params": int(net.count_params()),
                "model_name": net.name,
                "resumed_from_epoch": resumed_from,
                "train_images_per_second": images_per_second,
            },
        }
        write_json(self.run_dir / RUN_CONFIG, self.record)
        # Only now: the status says training is done. Only the files train wrote go.
        backup.remove(self.backup_dir)
        multiworker.remove_checkpoints(self.backup_dir / multiworker.CHECKPOINTS)
        multiworker.remove_empty_dirs(self.backup_dir)

    def evaluate(self, best: keras.Model | None = None) -> dict[str, Any]:
        """Scores best.keras on the test split, plots the curves, writes metrics.json.

        `best`: the model just trained when it holds best.keras's weights; evaluating it
        reuses the test step `fit` traced for validation (loading the file and tracing again
        cost ~1 s for a ResNet-20, several for a ResNet50). Otherwise the file is loaded.
        """
        run_dir, splits, config = self.run_dir, self.splits, self.config
        discard_corrupt_checkpoints(run_dir, trained=True)
        if best is None:
            best = keras.saving.load_model(run_dir / BEST, safe_mode=True)
            build_training_state(best, splits.test)
        with deferred():
            test_loss, test_accuracy = best.evaluate(
                splits.test, verbose=0, callbacks=[StopOnSignal()]
            )
        history_rows = read_history(run_dir / HISTORY)
        plot_curves(history_rows, run_dir / CURVES)
        trained = self.record["trained"]
        metrics = {
            "test_accuracy": float(test_accuracy),
            "test_loss": float(test_loss),
            "best_val_accuracy": max(r.get("val_accuracy", math.nan) for r in history_rows),
            "params": trained["params"],
            "epochs_run": len(history_rows),
            "resumed_from_epoch": trained["resumed_from_epoch"],
            "wall_seconds": round(time.perf_counter() - self.started, 2),
            "train_images_per_second": trained["train_images_per_second"],
            # A run trained before the policy was recorded used the one it asked for.
            "dtype_policy": self.record.get("precision", {}).get(
                "dtype_policy", config.mixed_precision or "float32"
            ),
            "spec": self.spec.to_dict() if self.spec else None,
            "model_name": trained["model_name"],
            "dataset": splits.to_dict(),
            "recipe": config.recipe,
            "split_sizes": dict(splits.sizes),
            "config": dataclasses.asdict(config),
            "files": {"best": BEST, "last": LAST, "history": HISTORY, "curves": CURVES},
        }
        write_json(run_dir / METRICS, metrics)
        return metrics

    def train_as_worker(self) -> dict[str, Any]:
        """A worker other than the chief: trains along, writes nothing of the run directory.

        Returns:
            What it did: its task, whether it trained, its weights' digest, its time.
        """
        task, strategy = self.task, self.strategy
        start = time.perf_counter()
        plan = multiworker.receive_plan(strategy)
        if plan == multiworker.REFUSED:
            raise ValueError(
                "the chief refused the run or failed before training (its output says why); "
                f"nothing was trained. Received: TF_CONFIG task {task.type} {task.index}"
            )
        if plan == multiworker.FINISHED:
            print(f"[{task.describe()}] the chief found nothing to train; done.", flush=True)
            return {"task": task.describe(), "trained": False}
        net = self.compile()
        divergence = StopOnDivergence()  # the losses are the chief's: it stops in the same step
        # The chief's checkpoints are restored where this worker sees them (a shared
        # filesystem), else the broadcast brings them; this worker writes none of them.
        loop = multiworker.Loop(net, self.splits, self.config, strategy, task, self.verbose)
        loop.run(callbacks=[divergence], checkpoint_dir=self.backup_dir / multiworker.CHECKPOINTS)
        if divergence.epoch is not None:
            raise TrainingDivergedError(
                f"training diverged in epoch {divergence.epoch + 1} ({divergence.reason}); the "
                f"chief keeps the checkpoints of the last good epoch. Received: TF_CONFIG task "
                f"{task.type} {task.index}"
            )
        multiworker.receive_plan(strategy)  # the chief has written the run directory
        multiworker.remove_empty_dirs(self.backup_dir)  # on this machine: the handler's, if any
        digest = multiworker.weights_digest(net)
        print(f"[{task.describe()}] done; weights sha256 {digest}", flush=True)
        return {
            "task": task.describe(),
            "trained": True,
            "resumed_from_epoch": loop.resumed_from,
            "weights_sha256": digest,
            "wall_seconds": round(time.perf_counter() - start, 2),
        }


def _checkpoints(
    run_dir: Path, divergence: StopOnDivergence, fresh_best: bool
) -> tuple[AtomicCheckpoint, AtomicCheckpoint]:
    """best.keras and last.keras; best.keras must beat the history's best val_loss unless
    `fresh_best` (a new run, or its best.keras was discarded)."""
    history_rows = read_history(run_dir / HISTORY)
    best_so_far = min((r.get("val_loss", math.inf) for r in history_rows), default=None)
    best = AtomicCheckpoint(
        run_dir / BEST,
        divergence,
        # val_loss, not val_accuracy: a small validation split reaches 100%
        # accuracy early, and the first such epoch would then stay "best".
        monitor="val_loss",
        mode="min",
        save_best_only=True,
        initial_value_threshold=None if fresh_best else best_so_far,
    )
    return best, AtomicCheckpoint(run_dir / LAST, divergence, same_as=best)
