"""The epochs of one run, laid out as pycls and torchvision's references do: :class:`Trainer` with
``train_epoch`` (updates and Speedometer lines), ``save_epoch`` (checkpoint and optimizer state), ``validate`` (the
whole validation file) and ``train_model`` calling them in turn; what each batch trains against
(:attr:`resnet_toolkit.runplan.RunPlan.targets`) and what a checkpoint's retention keeps (:func:`retain`)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resnet_toolkit import checkpoint as ckpt
from resnet_toolkit.data import iter_batches, make_train_iter, make_val_iter, next_batch
from resnet_toolkit.distill import Teacher, distill_targets
from resnet_toolkit.errors import UserError
from resnet_toolkit.evaluation import Counts
from resnet_toolkit.logparse import stats_line
from resnet_toolkit.precision import float32_params
from resnet_toolkit.recipe import random_erasing
from resnet_toolkit.runfiles import write_config
from resnet_toolkit.runplan import RunPlan
from resnet_toolkit.schedule import Schedule
from resnet_toolkit.train_args import RunConfig
from resnet_toolkit.trainlog import TrainingLog


@dataclass
class TrainResult:
    prefix: str
    begin_epoch: int
    end_epoch: int
    epoch_size: int
    history: list[dict] = field(default_factory=list)   # the json_stats records, one per epoch

    @property
    def val_accuracy(self) -> float:
        return self.history[-1]["val-accuracy"] if self.history else math.nan


def imagenet_metrics(cfg: RunConfig) -> bool:
    """Whether the log reports top-5 (ImageNet-size data, more than 5 classes) rather than cross-entropy next to
    the accuracy, as the original did."""
    return cfg.layout.net_type == "imagenet" and cfg.num_classes > 5


def metrics(cfg: RunConfig):
    """The training metrics: accuracy + cross-entropy for CIFAR-size data, accuracy + top-5 for ImageNet-size (as
    the original)."""
    import mxnet as mx

    if imagenet_metrics(cfg):
        return mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), mx.metric.TopKAccuracy(top_k=5)])
    return mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), mx.metric.CrossEntropy()])


def evaluate_engine(engine, val_iter, num_classes: int, top5: bool) -> list[tuple[str, float]]:
    """Accuracy and top-5 (``top5``) or cross-entropy of ``engine`` over one pass of a fresh validation iterator,
    excluding the padding of its last batch, counted by :class:`resnet_toolkit.evaluation.Counts` (as
    ``tools/score.py``), under the names MXNet's metrics log.

    (A reset ``ImageRecordIter`` with ``round_batch`` starts after the records it borrowed for the last padded
    batch, so each pass would see a different set: always pass a new iterator.)
    """
    counts = Counts(num_classes)
    for batch in val_iter:
        probs = engine.predict(batch)
        keep = probs.shape[0] - (batch.pad or 0)
        # float32 as MXNet's metrics read them (an NDArray made from a numpy array is float32)
        counts.add(probs[:keep].astype(np.float32, copy=False), batch.label[0].asnumpy()[:keep].astype(np.int64))
    if top5:
        return [("accuracy", counts.top1), (f"top_k_accuracy_{counts.k}", counts.topk)]
    return [("accuracy", counts.top1), ("cross-entropy", counts.cross_entropy)]


@dataclass
class Trainer:
    """One run's epochs, as pycls and torchvision's references lay them out: :meth:`train_epoch`,
    :meth:`save_epoch`, :meth:`validate`, and :meth:`train_model` calling them in turn. Everything it needs was
    worked out once: the run's facts in ``plan`` (:mod:`resnet_toolkit.runplan`), the engine, the Symbol it
    checkpoints and the schedule by :func:`resnet_toolkit.fit.fit`."""

    plan: RunPlan
    engine: Any
    sym: Any
    schedule: Schedule
    result: TrainResult
    log: TrainingLog
    teacher: Teacher | None = None

    def train_model(self) -> None:
        """Every epoch from the start point to ``--end-epoch``: train, checkpoint, validate, log, retain."""
        for epoch in range(self.result.begin_epoch, self.plan.cfg.end_epoch):
            train_values, class_counts, elapsed = self.train_epoch(epoch)
            self.save_epoch(epoch)
            val_values = self.validate(epoch)
            stats: dict[str, Any] = {"epoch": epoch}
            stats.update({f"train-{n}": round(v, 6) for n, v in train_values})
            stats.update({f"val-{n}": round(v, 6) for n, v in val_values})
            # 12 significant digits: the rate 0.1 x 0.1 is logged as 0.01, not its float product 0.010000000000000002
            num_update = (epoch + 1) * self.plan.data.epoch_size
            stats.update({"lr": float(f"{self.schedule(num_update):.12g}"), "time": round(elapsed, 3),
                          "speed": round(self.plan.data.epoch_size * self.plan.cfg.batch_size / elapsed, 2),
                          "images-read": int(class_counts.sum()), "class-counts-read": class_counts.tolist()})
            logging.info("%s", stats_line(stats))
            self.result.history.append(stats)
            retain(self.plan.cfg, self.result.prefix, epoch + 1, dict(val_values).get("accuracy", math.nan))
            self.log.commit()

    def train_epoch(self, epoch: int) -> tuple[list[tuple[str, float]], np.ndarray, float]:
        """One epoch of updates on a fresh iterator seeded ``seed + epoch``; returns the training metrics, the
        images read per class (this worker's share) and the wall time in seconds."""
        import mxnet as mx

        plan, engine = self.plan, self.engine
        cfg, aug, train_rec = plan.cfg, plan.augmentation, plan.data.train_rec
        metric = metrics(cfg)
        speedometer = mx.callback.Speedometer(cfg.batch_size, cfg.frequent)
        targets_of = plan.targets
        tic = time.time()
        train_iter = make_train_iter(train_rec, cfg.layout, cfg.batch_size, aug.level,
                                     num_parts=plan.cluster.num_workers, part_index=plan.cluster.rank,
                                     seed=cfg.seed + epoch, preprocess_threads=cfg.preprocess_threads,
                                     mirror=aug.mirror, pad=aug.pad)
        class_counts = np.zeros(cfg.num_classes, dtype=np.int64)
        for nbatch in range(plan.data.epoch_size):
            try:
                batch = next_batch(train_iter, train_rec)
            except StopIteration:
                train_iter.reset()
                batch = next_batch(train_iter, train_rec)
            labels = batch.label[0].asnumpy().astype(np.int64)
            class_counts += np.bincount(labels[(labels >= 0) & (labels < cfg.num_classes)],
                                        minlength=cfg.num_classes)
            data, targets = batch.data[0], batch.label[0]
            if cfg.random_erasing:
                erased = random_erasing(data.asnumpy(), cfg.random_erasing, cfg.seed, epoch, nbatch,
                                        cfg.random_erasing_fill)
                data = mx.nd.array(erased, ctx=data.context, dtype=data.dtype)
            if targets_of.soft:
                mixed, soft = targets_of.apply(data.asnumpy(), labels, epoch, nbatch)
                data = data if mixed is None else mx.nd.array(mixed, ctx=data.context)
                if self.teacher is not None:  # the teachers see the batch as the student does: mixed, erased
                    soft = distill_targets(soft, self.teacher.probabilities(data.asnumpy()), cfg.hard_weight)
                targets = mx.nd.array(soft, ctx=data.context)
            loss = engine.forward_backward(data, targets)
            if not math.isfinite(loss):
                raise UserError(f"training diverged: loss is {loss} at Epoch[{epoch}] Batch [{nbatch}]; stopped "
                                f"before updating, newest checkpoint kept: {newest(self.result.prefix)} (retrain "
                                f"from it with a lower --lr)")
            engine.update(metric, batch.label[0])
            speedometer(mx.model.BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric, locals=None))
        del train_iter
        train_values = metric.get_global_name_value()
        for name, value in train_values:
            logging.info("Epoch[%d] Train-%s=%f", epoch, name, value)
        elapsed = time.time() - tic
        logging.info("Epoch[%d] Time cost=%.3f", epoch, elapsed)
        return train_values, class_counts, elapsed

    def save_epoch(self, epoch: int) -> None:
        """Checkpoint ``epoch + 1``: float32 parameters, the optimizer state and where the schedule stands (the
        run's ``PREFIX-args.json`` with its first checkpoint)."""
        import mxnet as mx

        arg_params, aux_params = (float32_params(p) for p in self.engine.get_params())  # checkpoints are float32
        num_update = (epoch + 1) * self.plan.data.epoch_size
        states = self.engine.get_states()
        states["meta:num_update"] = mx.nd.array([num_update], dtype="float64")
        states["meta:next_lr"] = mx.nd.array([self.schedule.curve(num_update + 1)], dtype="float64")
        if self.schedule.mode != "step":  # the peak of the curve (a step curve's base_lr is the rate at its start)
            states["meta:base_lr"] = mx.nd.array([self.schedule.base_lr], dtype="float64")
        saved = ckpt.save_checkpoint(self.result.prefix, epoch + 1, self.sym, arg_params, aux_params, states,
                                     replace_symbol=not self.plan.cfg.retrain)
        if epoch == self.result.begin_epoch:
            write_config(self.plan.flags_as_trained())
        logging.info('Saved checkpoint to "%s"', saved)

    def validate(self, epoch: int) -> list[tuple[str, float]]:
        """The metrics over the whole validation file (every worker: in a dist_sync job all hold the same
        weights, so each logs the accuracy of the whole set, not of a 1/N share)."""
        cfg, val_rec = self.plan.cfg, self.plan.data.val_rec
        val_iter = make_val_iter(val_rec, cfg.layout, cfg.batch_size, preprocess_threads=cfg.preprocess_threads)
        val_values = evaluate_engine(self.engine, iter_batches(val_iter, val_rec), cfg.num_classes,
                              imagenet_metrics(cfg))
        for name, value in val_values:
            logging.info("Epoch[%d] Validation-%s=%f", epoch, name, value)
        return val_values


def retain(cfg: RunConfig, prefix: str, epoch: int, accuracy: float) -> None:
    """``--save-best``: record checkpoint ``epoch`` in ``PREFIX-best.json`` when its validation accuracy is the
    best so far; ``--keep-last N``: delete all but the newest N checkpoints and the best."""
    best = ckpt.read_best(prefix) if cfg.save_best else None
    if cfg.save_best and (best is None or accuracy > best["val-accuracy"]
                          or not ckpt.params_path(prefix, best["epoch"]).is_file()):
        ckpt.write_best(prefix, epoch, accuracy)
        best = {"epoch": epoch, "val-accuracy": accuracy}
        logging.info("Epoch[%d] best validation accuracy so far: checkpoint %s", epoch - 1,
                     ckpt.params_path(prefix, epoch))
    deleted = ckpt.prune(prefix, cfg.keep_last, keep=[best["epoch"]] if best else [])
    if deleted:
        logging.info("--keep-last %d: deleted the checkpoints of epochs %s", cfg.keep_last,
                     ", ".join(map(str, deleted)))


def newest(prefix: str) -> str:
    epoch = ckpt.latest_epoch(prefix)
    return str(ckpt.params_path(prefix, epoch)) if epoch is not None else "none yet"
