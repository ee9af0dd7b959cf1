"""The training loop behind ``train_resnet.py``: one loop over either engine (:mod:`resnet_toolkit.engines`).

What a run does, epoch by epoch (``Epoch[k]`` is 0-based, its checkpoint file is ``k + 1`` as MXNet's
``do_checkpoint``):

1. a fresh training iterator seeded ``seed + k`` (same shuffle and augmentation whenever epoch k is replayed),
   from which exactly ``epoch_size`` batches are taken;
2. per batch: ``--random-erasing``, the targets (labels, or distributions with ``--label-smoothing``/``--mixup``,
   joined by the teachers' predictions with ``--teacher``),
   forward/backward, a finite-loss check *before* the update (a NaN or infinite loss stops the run with the epoch
   and batch, the last checkpoint untouched), the update, metrics, MXNet's ``Speedometer``;
3. ``Epoch[k] Train-*``, ``Epoch[k] Time cost``, the checkpoint (params + optimizer state, each file renamed
   into place), ``Epoch[k] Validation-*`` over the whole validation set and a ``json_stats: {...}`` line, then
   ``--save-best``/``--keep-last``; the log file is then committed.

The learning rate is :mod:`resnet_toolkit.schedule`'s pure function of the global update count; a retrain passes the
count reached (``begin_epoch * epoch_size``) to the optimizer, so the curve continues where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit import checkpoint as ckpt
from resnet_toolkit.capability import cpu_model, probe
from resnet_toolkit.cluster import Cluster, make_cluster, make_contexts
from resnet_toolkit.data import (
    DataPlan,
    iter_batches,
    make_train_iter,
    make_val_iter,
    next_batch,
    plan_data,
    resolve_augmentation,
)
from resnet_toolkit.distill import Teacher, distill_targets, load_teacher
from resnet_toolkit.distributed import rank_path
from resnet_toolkit.engines import GluonEngine, ModuleEngine, TrainSetup
from resnet_toolkit.errors import UserError
from resnet_toolkit.fileio import atomic_write_text
from resnet_toolkit.logparse import stats_line
from resnet_toolkit.precision import default_policy, describe, float32_params
from resnet_toolkit.recipe import TargetRecipe, frozen_names, multipliers, random_erasing
from resnet_toolkit.records import check_class_count
from resnet_toolkit.schedule import Schedule, rate_at_epoch
from resnet_toolkit.synset import SYNSET, copy_synset
from resnet_toolkit.train_args import (
    RunConfig,
    check_writable_dir,
    default_prefix,
    network_flags,
    saved_config,
    uses_training_graph,
)
from resnet_toolkit.trainlog import TrainingLog
from resnet_toolkit.weights import (
    check_checkpoint_fits,
    check_same_network,
    check_symbol_file,
    finetune_params,
    init_params,
    zero_last_layers,
)

DEFAULT_LR = 0.1


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


# ------------------------------------------------------------------------------------------ from the config
def build_symbol(cfg: RunConfig):
    """The Symbol for the flags; with ``--memonger`` the planned (recomputing) graph."""
    from symbols import get_symbol

    sym = get_symbol(cfg.num_classes, cfg.depth, cfg.layout.net_type, bn_mom=cfg.bn_mom, workspace=cfg.workspace,
                     memonger=cfg.memonger, **network_kwargs(cfg))
    if cfg.memonger:
        from symbols.memonger import search_plan

        sym = search_plan(sym, data=(cfg.batch_size // cfg.num_contexts,) + tuple(cfg.layout.image_shape))
    return sym


def network_kwargs(cfg: RunConfig) -> dict:
    """The family flags as :func:`symbols.get_symbol` / :func:`symbols.get_net` take them."""
    return dict(network=cfg.network, cardinality=cfg.cardinality, bottleneck_width=cfg.bottleneck_width)


def target_recipe(cfg: RunConfig) -> TargetRecipe:
    """What each batch trains against (``--label-smoothing``, ``--mixup``, ``--mixup-off-epoch``, ``--teacher``)."""
    return TargetRecipe(cfg.num_classes, cfg.label_smoothing, cfg.mixup, cfg.mixup_off_epoch, cfg.end_epoch,
                        cfg.seed, distilled=bool(cfg.teacher))


def train_setup(cfg: RunConfig, param_names) -> TrainSetup:
    """The :class:`TrainSetup` of the flags (``--label-smoothing``, ``--mixup``, ``--no-wd``, ``--lr-mult-body``,
    ``--freeze-stages``) for a network with ``param_names``."""
    wd_mult, lr_mult = multipliers(param_names, cfg.no_wd, cfg.lr_mult_body)
    return TrainSetup(cfg.num_classes, target_recipe(cfg).soft, wd_mult, lr_mult,
                      frozen_names(param_names, cfg.freeze_stages), cfg.dtype,
                      default_policy(cfg.dtype, cfg.precision_policy))


def make_schedule(cfg: RunConfig, begin_epoch: int, epoch_size: int, states: dict | None) -> Schedule:
    """The learning-rate curve of the run (:class:`resnet_toolkit.schedule.Schedule`) for ``--lr-mode``.

    'step' keeps the original's meaning of ``--lr``: the rate in force at ``begin_epoch`` (default: the rate the
    checkpointed run would have used next, ``meta:next_lr``). 'cosine'/'poly': ``--lr`` is the curve's peak
    (default: the checkpointed run's ``meta:base_lr``, else 0.1), the curve is absolute in the update count.
    """

    def saved(key: str) -> float | None:
        return float(states[key].asnumpy()[0]) if states is not None and key in states else None

    if cfg.lr_mode == "step":
        lr = cfg.lr if cfg.lr is not None else saved("meta:next_lr")
        if lr is None:
            lr = rate_at_epoch(begin_epoch, DEFAULT_LR, cfg.lr_step_epochs, cfg.lr_factor)
    else:
        lr = cfg.lr if cfg.lr is not None else (saved("meta:base_lr") or DEFAULT_LR)
    return Schedule(cfg.lr_mode, lr, epoch_size, cfg.end_epoch, cfg.lr_step_epochs, cfg.lr_factor, begin_epoch,
                    cfg.warmup_epochs, cfg.warmup_lr)


def _metrics(cfg: RunConfig):
    """accuracy + cross-entropy for CIFAR-size data, accuracy + top-5 for ImageNet-size (as the original)."""
    import mxnet as mx

    if cfg.layout.net_type == "imagenet" and cfg.num_classes > 5:
        return mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), mx.metric.TopKAccuracy(top_k=5)])
    return mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), mx.metric.CrossEntropy()])


def evaluate(engine, val_iter, metric) -> list[tuple[str, float]]:
    """Metrics of ``engine`` over one pass of a fresh validation iterator, excluding the padding of its last batch.

    (A reset ``ImageRecordIter`` with ``round_batch`` starts after the records it borrowed for the last padded
    batch, so each pass would see a different set: always pass a new iterator.)
    """
    import mxnet as mx

    metric.reset()
    for batch in val_iter:
        probs = engine.predict(batch)
        keep = probs.shape[0] - (batch.pad or 0)
        metric.update([mx.nd.array(batch.label[0].asnumpy()[:keep])], [mx.nd.array(probs[:keep])])
    return metric.get_name_value()


# -------------------------------------------------------------------------------------------------- a run
@dataclass
class Start:
    """Where a run starts: the epoch, the parameters and the optimizer state (None: fresh)."""

    epoch: int
    arg_params: dict
    aux_params: dict
    states: dict | None
    notes: list[str] = field(default_factory=list)  # lines for the log (what was loaded)


def starting_point(cfg: RunConfig, sym) -> Start:
    """``--retrain`` (this run's newest or ``--model-load-epoch`` checkpoint with its optimizer state),
    ``--finetune`` (another checkpoint's matching arrays, fresh optimizer) or fresh weights."""
    prefix, shape = cfg.model_prefix, cfg.data_shape
    if cfg.retrain:
        epoch = ckpt.resolve_epoch(prefix, cfg.model_load_epoch)
        arg_params, aux_params = ckpt.load_params(prefix, epoch)
        check_checkpoint_fits(sym, shape, arg_params, aux_params, ckpt.params_path(prefix, epoch), cfg.num_classes)
        if ckpt.symbol_path(prefix).is_file():
            check_symbol_file(sym, shape, ckpt.symbol_path(prefix))
        return Start(epoch, arg_params, aux_params, ckpt.load_states(prefix, epoch))
    existing = ckpt.list_epochs(prefix)
    if existing:
        raise UserError(f"{prefix} already has checkpoints (epochs {', '.join(map(str, existing))}); add "
                        f"--retrain to continue from the newest, or choose another --model-prefix")
    if cfg.finetune:
        arg_params, aux_params, report = finetune_params(cfg.finetune, sym, shape, cfg.seed)
        return Start(0, arg_params, aux_params, None, report.lines())
    arg_params, aux_params = init_params(sym, shape, cfg.seed)
    notes = []
    if cfg.last_gamma:
        zeroed = zero_last_layers(cfg.network, arg_params)
        notes.append(f"--last-gamma: every residual unit starts as the identity ({len(zeroed)} arrays zeroed: "
                     f"{zeroed[0]}, ...)")
    return Start(0, arg_params, aux_params, None, notes)


def resolve_paths(cfg: RunConfig, cluster: Cluster) -> RunConfig:
    """The checkpoint prefix and log file of this worker: the default prefix ends in the rank; in a multi-worker
    job every rank writes its own files, also where workers share a machine or a folder."""
    prefix, log_file = cfg.model_prefix or default_prefix(cfg, cluster.rank), cfg.log_file
    if cluster.num_workers > 1:
        if cfg.model_prefix:
            prefix = f"{prefix}-{cluster.rank}"
        if log_file:
            log_file = rank_path(log_file, cluster.rank, cluster.num_workers)
    check_writable_dir(Path(prefix).parent, "checkpoint (--model-prefix)")
    if log_file:
        check_writable_dir(Path(log_file).parent, "--log-file")
    return dataclasses.replace(cfg, model_prefix=prefix, log_file=log_file)


def make_engine(cfg: RunConfig, sym, cluster: Cluster, start: Start, optimizer_params: dict):
    """The engine of ``--api`` on the contexts of ``--gpus``/``--cpus``, holding ``start``'s parameters."""
    contexts = make_contexts(list(cfg.gpu_ids), cfg.cpus)
    setup = train_setup(cfg, list(start.arg_params))
    common = dict(contexts=contexts, cluster=cluster, data_shape=cfg.data_shape, arg_params=start.arg_params,
                  aux_params=start.aux_params, optimizer=cfg.optimizer, optimizer_params=optimizer_params,
                  fast_graph=uses_training_graph(cfg), recipe=setup)
    if cfg.api == "gluon":
        from symbols import get_net

        net = get_net(cfg.num_classes, cfg.depth, cfg.layout.net_type, bn_mom=cfg.bn_mom, **network_kwargs(cfg))
        return GluonEngine(net, **common)
    return ModuleEngine(sym, **common)


def fit(cfg: RunConfig) -> TrainResult:
    """Train as the resolved flags ``cfg`` say (:func:`resnet_toolkit.train_args.resolve_args`)."""
    cluster = make_cluster(cfg.kv_store, cfg.num_contexts)
    cfg = resolve_paths(cfg, cluster)
    cfg = resolve_retrain(cfg)
    prefix = cfg.model_prefix
    ckpt.remove_stale_partials(prefix)
    plan = plan_data(cfg.layout, cfg.data_dir, cfg.aug_level, cfg.batch_size, cluster.num_workers, cfg.num_examples)
    sym = build_symbol(cfg)
    start = starting_point(cfg, sym)
    if start.epoch >= cfg.end_epoch:
        raise UserError(f"checkpoint epoch {start.epoch} is already at --end-epoch {cfg.end_epoch}: nothing to do")
    teacher = (load_teacher(cfg.teacher, cfg.batch_size, cfg.layout.image_shape, cfg.num_classes)
               if cfg.teacher else None)
    # after the checkpoint and teacher checks (their messages name the more specific mismatch), before any write
    synset = Path(cfg.data_dir) / SYNSET
    check_class_count(cfg.num_classes, plan.train_rec, plan.val_rec, synset if synset.is_file() else None)

    schedule = make_schedule(cfg, start.epoch, plan.epoch_size, start.states)
    sync_workers = cluster.num_workers if cluster.kv is not None and "_sync" in cluster.kv.type else 1
    optimizer_params = dict(learning_rate=schedule.base_lr, lr_scheduler=schedule, momentum=cfg.mom, wd=cfg.wd,
                            rescale_grad=1.0 / (cfg.batch_size * sync_workers),
                            begin_num_update=start.epoch * plan.epoch_size)

    changed = _config_changes(cfg)
    log = TrainingLog(cfg.log_file, cluster.rank)
    try:
        # The original's first line (MXNet's fit.py logs the argparse Namespace).
        logging.info("start with arguments %s", argparse.Namespace(**dataclasses.asdict(cfg)))
        if changed:
            logging.info("--retrain with flags other than %s-args.json's: %s", prefix, "; ".join(changed))
        if cluster.rank == 0:
            copy_synset(cfg.data_dir, Path(prefix).parent)
        engine = make_engine(cfg, sym, cluster, start, optimizer_params)
        logging.info("cpu: %s; oneDNN %s runs %s", cpu_model(), probe().onednn, probe().isa_words())
        logging.info("training graph: %s", "resnet_toolkit.fastpath.training_graph (--plain-graph to turn off)"
                     if uses_training_graph(cfg) else "as built")
        if cfg.dtype != "float32":
            logging.info("%s", describe(cfg.dtype, policy=cfg.precision_policy))
        for note in start.notes:
            logging.info("%s", note)
        if teacher is not None:
            logging.info("--teacher: distilling from %s (their mean probabilities weigh %g in the targets, the "
                         "labels %g)", ", ".join(teacher.names), 1 - cfg.hard_weight, cfg.hard_weight)
        if start.states:
            engine.set_states(start.states)
        if cfg.retrain:
            # The rate of the first update this run makes (for cosine/poly, not the peak base_lr).
            logging.info("Loaded %s (%s optimizer state); continuing at Epoch[%d], lr %g",
                         ckpt.params_path(prefix, start.epoch), "with" if start.states else "without", start.epoch,
                         float(f"{schedule(start.epoch * plan.epoch_size + 1):.12g}"))
        result = TrainResult(prefix, start.epoch, cfg.end_epoch, plan.epoch_size)
        Trainer(cfg, engine, sym, plan, cluster, schedule, result, log, teacher).train_model()
    finally:
        log.close()
    return result


def _config_path(cfg: RunConfig) -> Path:
    return Path(f"{cfg.model_prefix}-args.json")


def _saved_config(cfg: RunConfig) -> dict | None:
    """The ``PREFIX-args.json`` mapping of the run a ``--retrain`` continues; None when not a retrain, or when the
    file is absent or unreadable (a run killed before its first checkpoint wrote it, the original's files)."""
    path = _config_path(cfg)
    if not (cfg.retrain and path.is_file()):
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def resolve_retrain(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its augmentation resolved (:func:`resnet_toolkit.data.resolve_augmentation`): each of
    ``--aug-level``, ``--mirror`` and ``--pad`` not given takes a ``--retrain``'s saved value, else the data type's
    default. A retrain whose flags build another network than its ``PREFIX-args.json`` names (depth, family,
    cardinality, width, classes, image shape) is refused here, before anything is written."""
    saved = _saved_config(cfg)
    if saved is not None:
        check_same_network(network_flags(saved), network_flags(saved_config(cfg)), _config_path(cfg),
                           cfg.model_prefix)
    level, mirror, pad = resolve_augmentation(cfg.layout, cfg.aug_level, cfg.mirror, cfg.pad, saved)
    return dataclasses.replace(cfg, aug_level=level, mirror=mirror, pad=pad)


def _config_changes(cfg: RunConfig) -> list[str]:
    """The flags a retrain changes against the ``PREFIX-args.json`` of the run it continues ('lr 0.1 -> 0.01')."""
    path = _config_path(cfg)
    if not (cfg.retrain and path.is_file()):
        return []
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return []
    config = saved_config(cfg)
    return [f"{k} {before.get(k)} -> {v}" for k, v in config.items() if isinstance(before, dict)
            and before.get(k, v) != v]


def _write_config(cfg: RunConfig) -> None:
    """``PREFIX-args.json``: the resolved flags (:func:`resnet_toolkit.train_args.saved_config`), written with the run's
    first checkpoint; a retrain keeps the file of the run it continues."""
    path = _config_path(cfg)
    if not (cfg.retrain and path.is_file()):
        atomic_write_text(path, json.dumps(saved_config(cfg), indent=1) + "\n")


@dataclass
class Trainer:
    """One run's epochs, as pycls and torchvision's references lay them out: :meth:`train_epoch`,
    :meth:`save_epoch`, :meth:`validate`, and :meth:`train_model` calling them in turn. Everything it needs was
    worked out once by :func:`fit` (the engine, the data plan, the schedule, where the files go)."""

    cfg: RunConfig
    engine: Any
    sym: Any
    plan: DataPlan
    cluster: Cluster
    schedule: Schedule
    result: TrainResult
    log: TrainingLog
    teacher: Teacher | None = None

    def train_model(self) -> None:
        """Every epoch from the start point to ``--end-epoch``: train, checkpoint, validate, log, retain."""
        for epoch in range(self.result.begin_epoch, self.cfg.end_epoch):
            train_values, class_counts, elapsed = self.train_epoch(epoch)
            self.save_epoch(epoch)
            val_values = self.validate(epoch)
            stats: dict[str, Any] = {"epoch": epoch}
            stats.update({f"train-{n}": round(v, 6) for n, v in train_values})
            stats.update({f"val-{n}": round(v, 6) for n, v in val_values})
            # 12 significant digits: the rate 0.1 x 0.1 is logged as 0.01, not its float product 0.010000000000000002
            num_update = (epoch + 1) * self.plan.epoch_size
            stats.update({"lr": float(f"{self.schedule(num_update):.12g}"), "time": round(elapsed, 3),
                          "speed": round(self.plan.epoch_size * self.cfg.batch_size / elapsed, 2),
                          "images-read": int(class_counts.sum()), "class-counts-read": class_counts.tolist()})
            logging.info("%s", stats_line(stats))
            self.result.history.append(stats)
            _retain(self.cfg, self.result.prefix, epoch + 1, dict(val_values).get("accuracy", math.nan))
            self.log.commit()

    def train_epoch(self, epoch: int) -> tuple[list[tuple[str, float]], np.ndarray, float]:
        """One epoch of updates on a fresh iterator seeded ``seed + epoch``; returns the training metrics, the
        images read per class (this worker's share) and the wall time in seconds."""
        import mxnet as mx

        cfg, engine, plan = self.cfg, self.engine, self.plan
        metric = _metrics(cfg)
        speedometer = mx.callback.Speedometer(cfg.batch_size, cfg.frequent)
        targets_of = target_recipe(cfg)
        tic = time.time()
        train_iter = make_train_iter(plan.train_rec, cfg.layout, cfg.batch_size, cfg.aug_level,
                                     num_parts=self.cluster.num_workers, part_index=self.cluster.rank,
                                     seed=cfg.seed + epoch, preprocess_threads=cfg.preprocess_threads,
                                     mirror=cfg.mirror, pad=cfg.pad)
        class_counts = np.zeros(cfg.num_classes, dtype=np.int64)
        for nbatch in range(plan.epoch_size):
            try:
                batch = next_batch(train_iter, plan.train_rec)
            except StopIteration:
                train_iter.reset()
                batch = next_batch(train_iter, plan.train_rec)
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
                                f"before updating, newest checkpoint kept: {_newest(self.result.prefix)} (retrain "
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
        num_update = (epoch + 1) * self.plan.epoch_size
        states = self.engine.get_states()
        states["meta:num_update"] = mx.nd.array([num_update], dtype="float64")
        states["meta:next_lr"] = mx.nd.array([self.schedule.curve(num_update + 1)], dtype="float64")
        if self.schedule.mode != "step":  # the peak of the curve (a step curve's base_lr is the rate at its start)
            states["meta:base_lr"] = mx.nd.array([self.schedule.base_lr], dtype="float64")
        saved = ckpt.save_checkpoint(self.result.prefix, epoch + 1, self.sym, arg_params, aux_params, states,
                                     replace_symbol=not self.cfg.retrain)
        if epoch == self.result.begin_epoch:
            _write_config(self.cfg)
        logging.info('Saved checkpoint to "%s"', saved)

    def validate(self, epoch: int) -> list[tuple[str, float]]:
        """The metrics over the whole validation file (every worker: in a dist_sync job all hold the same
        weights, so each logs the accuracy of the whole set, not of a 1/N share)."""
        cfg = self.cfg
        val_iter = make_val_iter(self.plan.val_rec, cfg.layout, cfg.batch_size,
                                 preprocess_threads=cfg.preprocess_threads)
        val_values = evaluate(self.engine, iter_batches(val_iter, self.plan.val_rec), _metrics(cfg))
        for name, value in val_values:
            logging.info("Epoch[%d] Validation-%s=%f", epoch, name, value)
        return val_values


def _retain(cfg: RunConfig, prefix: str, epoch: int, accuracy: float) -> None:
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


def _newest(prefix: str) -> str:
    epoch = ckpt.latest_epoch(prefix)
    return str(ckpt.params_path(prefix, epoch)) if epoch is not None else "none yet"
