"""The training loop behind ``train_resnet.py``: one loop, two engines (``mx.mod.Module`` and Gluon).

What a run does, epoch by epoch (``Epoch[k]`` is 0-based, its checkpoint file is ``k + 1`` as MXNet's
``do_checkpoint``):

1. a fresh training iterator seeded ``seed + k`` (same shuffle and augmentation whenever epoch k is replayed),
   from which exactly ``epoch_size`` batches are taken;
2. per batch: forward/backward, a finite-loss check *before* the update (a NaN or infinite loss stops the run
   with the epoch and batch, the last checkpoint untouched), the update, metrics, MXNet's ``Speedometer``;
3. ``Epoch[k] Train-*``, ``Epoch[k] Time cost``, the checkpoint (params + optimizer state, each file renamed
   into place), ``Epoch[k] Validation-*`` and a ``json_stats: {...}`` line; the log file is then committed.

The learning rate is :mod:`resnetv2.schedule`'s pure function of the global update count; a retrain passes the
count reached (``begin_epoch * epoch_size``) to the optimizer, so the curve continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import resnetv2  # noqa: F401  (numpy compatibility before mxnet)
from resnetv2 import checkpoint as ckpt
from resnetv2.data import check_batch_fits, check_record_file, count_records, make_train_iter, make_val_iter
from resnetv2.distributed import rank_path
from resnetv2.errors import UserError
from resnetv2.fileio import atomic_path, atomic_write_text
from resnetv2.recipe import TargetRecipe, frozen_names, is_decayed, last_layer_names, multipliers, soft_cross_entropy
from resnetv2.schedule import Schedule, rate_at_epoch
from resnetv2.train_args import check_writable_dir, data_layout, default_prefix, saved_config, uses_training_graph

LOG_FORMAT = "%(asctime)-15s Node[{rank}] %(message)s"
DEFAULT_LR = 0.1


# ----------------------------------------------------------------------------------------------- cluster + data
@dataclass
class Cluster:
    """The kvstore (None when one context on one machine needs none), this worker's rank and the worker count.

    Everything distributed depends on these three: the data partition (``num_parts=num_workers``,
    ``part_index=rank``), the gradient scale (``1 / (batch_size * num_workers)`` for dist_sync) and the
    checkpoint prefix's rank suffix.
    """

    kv: Any
    rank: int = 0
    num_workers: int = 1


def make_cluster(kv_store: str, num_contexts: int) -> Cluster:
    """Create the kvstore for ``--kv-store`` and ``num_contexts`` devices (the one place that does)."""
    import mxnet as mx

    if "dist" not in kv_store and num_contexts == 1:
        return Cluster(None)
    try:
        kv = mx.kv.create(kv_store)
    except mx.base.MXNetError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise UserError(f"--kv-store {kv_store}: cannot create it ({first})") from None
    return Cluster(kv, kv.rank, kv.num_workers)


def make_contexts(args: argparse.Namespace) -> list:
    import mxnet as mx

    if args.gpu_ids:
        return [mx.gpu(i) for i in args.gpu_ids]
    return [mx.cpu(i) for i in range(args.cpus)]


@dataclass
class DataPlan:
    train_rec: Path
    val_rec: Path
    records: int          # records in the training file (all workers)
    num_examples: int     # images per epoch (all workers)
    epoch_size: int       # updates per epoch


def plan_data(args: argparse.Namespace, cluster: Cluster) -> DataPlan:
    """Check the record files and derive the epoch size as the original did: floor(examples / batch / workers)."""
    layout = data_layout(args)
    if not Path(args.data_dir).is_dir():
        raise UserError(f"--data-dir {args.data_dir}: no such folder (make it with: {layout.make_command})")
    train_rec, _ = check_record_file(layout.train_path(args.data_dir, args.aug_level), layout.make_command)
    val_rec, _ = check_record_file(layout.val_path(args.data_dir), layout.make_command)
    records = count_records(train_rec)
    num_examples = args.num_examples or records
    if num_examples > records:
        raise UserError(f"--num-examples {num_examples} exceeds the {records} records in {train_rec}")
    for rec in (train_rec, val_rec):
        check_batch_fits(rec, args.batch_size, cluster.num_workers)
    epoch_size = max(num_examples // (args.batch_size * cluster.num_workers), 1)
    return DataPlan(train_rec, val_rec, records, num_examples, epoch_size)


def _train_iter(args, plan: DataPlan, cluster: Cluster, epoch: int):
    layout = data_layout(args)
    return make_train_iter(plan.train_rec, layout, args.batch_size, args.aug_level, num_parts=cluster.num_workers,
                           part_index=cluster.rank, seed=args.seed + epoch,
                           preprocess_threads=args.preprocess_threads)


def _val_iter(args, plan: DataPlan, cluster: Cluster):
    layout = data_layout(args)
    return make_val_iter(plan.val_rec, layout, args.batch_size, num_parts=cluster.num_workers,
                         part_index=cluster.rank, preprocess_threads=args.preprocess_threads)


# --------------------------------------------------------------------------------------------------- logging
class CommittedLogFile(logging.Handler):
    """A log file that never shows a torn line: lines go to a hidden running file beside it, and
    :meth:`commit` (once per epoch and at the end) copies that into place with a rename.

    An existing log is continued (appended), as ``logging.FileHandler`` would.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.running = self.path.with_name(f".{self.path.name}.running-{os.getpid()}")
        # Lines a killed run logged after its last commit are also on its stdout; its running file is garbage.
        for stale in self.path.parent.glob(f".{self.path.name}.running-*"):
            pid = stale.name.rsplit("-", 1)[1]
            if pid.isdigit() and not ckpt._pid_alive(int(pid)):
                stale.unlink(missing_ok=True)
        if self.path.is_file():
            shutil.copyfile(self.path, self.running)
        self.stream = open(self.running, "a", encoding="utf-8")  # noqa: SIM115  (closed in close())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001  (logging's own contract: report, never raise)
            self.handleError(record)

    def commit(self) -> None:
        self.stream.flush()
        with atomic_path(self.path) as tmp:
            shutil.copyfile(self.running, tmp)

    def close(self) -> None:
        if not self.stream.closed:
            self.commit()
            self.stream.close()
            self.running.unlink(missing_ok=True)
        super().close()


class TrainingLog:
    """Root-logger set-up for one run (MXNet's ``Speedometer`` logs through the root logger)."""

    def __init__(self, log_file: str | None, rank: int):
        fmt = logging.Formatter(LOG_FORMAT.format(rank=rank))
        self.handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
        self.file = CommittedLogFile(log_file) if log_file else None
        if self.file:
            self.handlers.append(self.file)
        root = logging.getLogger()
        self.saved_level = root.level
        for handler in self.handlers:
            handler.setFormatter(fmt)
            root.addHandler(handler)
        root.setLevel(logging.INFO)

    def commit(self) -> None:
        if self.file:
            self.file.commit()

    def close(self) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.flush()
            if handler is self.file:
                handler.close()
        root.setLevel(self.saved_level)


# --------------------------------------------------------------------------------------------- params + state
def init_params(sym, data_shape: tuple[int, ...], seed: int) -> tuple[dict, dict]:
    """Fresh parameters for ``sym`` as ``Module.init_params`` makes them: Xavier(gaussian, in, 2) (He-normal) on
    weights, zeros on biases/betas/means, ones on gammas/variances, in sorted name order after
    ``mx.random.seed(seed)``. Both engines start from these, so they start equal."""
    import mxnet as mx

    mx.random.seed(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape, softmax_label=data_shape[:1])
    initializer = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    attrs = sym.attr_dict()
    inputs = {"data", "softmax_label"}
    args = {n: s for n, s in zip(sym.list_arguments(), arg_shapes) if n not in inputs}
    auxs = dict(zip(sym.list_auxiliary_states(), aux_shapes))
    out = []
    for shapes in (args, auxs):
        params = {}
        for name in sorted(shapes):
            params[name] = mx.nd.zeros(shapes[name])
            initializer(mx.init.InitDesc(name, attrs.get(name, None)), params[name])
        out.append(params)
    return out[0], out[1]


def check_checkpoint_fits(sym, data_shape, arg_params: dict, aux_params: dict, where: Path,
                          num_classes: int) -> None:
    """A clear error when a loaded checkpoint does not fit the network built from the flags."""
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape, softmax_label=data_shape[:1])
    expected = {n: s for n, s in zip(sym.list_arguments(), arg_shapes) if n not in ("data", "softmax_label")}
    expected.update(zip(sym.list_auxiliary_states(), aux_shapes))
    loaded = {**arg_params, **aux_params}
    fc = loaded.get("fc1_bias")
    if fc is not None and fc.shape[0] != num_classes:
        raise UserError(f"--num-classes {num_classes} does not match checkpoint {where}, which has "
                        f"{fc.shape[0]} classes")
    for name, shape in expected.items():
        if name not in loaded:
            raise UserError(f"checkpoint {where} has no parameter {name!r}: it was trained with another --depth "
                            f"or --data-type")
        if tuple(loaded[name].shape) != tuple(shape):
            raise UserError(f"checkpoint {where}: {name} has shape {tuple(loaded[name].shape)}, the network "
                            f"built from the flags needs {tuple(shape)} (another --depth or --data-type?)")


# ------------------------------------------------------------------------------------------------- engines
@dataclass
class TrainSetup:
    """What both engines apply beyond the optimizer's own arguments (:mod:`resnetv2.recipe`): whether targets are
    distributions over ``num_classes``, weight-decay and learning-rate multipliers by parameter name, and the
    names of frozen (untrained) parameters."""

    num_classes: int = 0
    soft: bool = False
    wd_mult: dict = field(default_factory=dict)
    lr_mult: dict = field(default_factory=dict)
    frozen: list = field(default_factory=list)


def train_setup(args: argparse.Namespace, param_names) -> TrainSetup:
    """The :class:`TrainSetup` of the flags (``--label-smoothing``, ``--mixup``, ``--no-wd``, ``--lr-mult-body``,
    ``--freeze-stages``) for a network with ``param_names``."""
    wd_mult, lr_mult = multipliers(param_names, args.no_wd, args.lr_mult_body)
    return TrainSetup(args.num_classes, target_recipe(args).soft, wd_mult, lr_mult,
                      frozen_names(param_names, args.freeze_stages))


def target_recipe(args: argparse.Namespace) -> TargetRecipe:
    return TargetRecipe(args.num_classes, args.label_smoothing, args.mixup, args.mixup_off_epoch, args.end_epoch,
                        args.seed)


def _optimizer(name: str, optimizer_params: dict, param_names, wd_mult: dict, lr_mult: dict):
    """The MXNet optimizer with ``wd_mult`` / ``lr_mult`` set explicitly for every parameter name (built here, not
    by Module from a string, so the servers of a dist kvstore receive the multipliers too)."""
    import mxnet as mx

    optimizer = mx.optimizer.create(name, **optimizer_params)
    optimizer.wd_mult = {n: wd_mult.get(n, 1.0 if is_decayed(n) else 0.0) for n in param_names}
    optimizer.lr_mult = {n: lr_mult.get(n, 1.0) for n in param_names}
    return optimizer


class ModuleEngine:
    """``mx.mod.Module`` over the Symbol, as the original trained (there through FeedForward).

    With ``fast_graph`` the Module binds :func:`resnetv2.fastpath.training_graph` of ``sym``: the same parameters
    and outputs (tests/test_fastpath.py), a faster backward pass on CPU. Checkpoints still hold ``sym``.
    """

    def __init__(self, sym, contexts, cluster: Cluster, data_shape, arg_params, aux_params, optimizer: str,
                 optimizer_params: dict, fast_graph: bool = False, recipe: TrainSetup | None = None):
        import mxnet as mx

        recipe = recipe or TrainSetup()
        if fast_graph:
            from resnetv2.fastpath import training_graph

            sym, _ = training_graph(sym)
        # Soft targets (label smoothing, mixup): SoftmaxOutput takes a label of the output's shape as a
        # distribution, its gradient is then probs - targets.
        label_shape = (data_shape[0], recipe.num_classes) if recipe.soft else data_shape[:1]
        self.mod = mx.mod.Module(sym, context=contexts, fixed_param_names=recipe.frozen or None)
        self.mod.bind(data_shapes=[("data", data_shape)], label_shapes=[("softmax_label", label_shape)])
        self.mod.init_params(arg_params=arg_params, aux_params=aux_params, allow_missing=False, force_init=True)
        names = self.mod._exec_group.param_names
        self.mod.init_optimizer(kvstore=cluster.kv, optimizer=_optimizer(optimizer, optimizer_params, names,
                                                                         recipe.wd_mult, recipe.lr_mult))
        self.loss = math.nan

    @property
    def optimizer(self):
        return self.mod._optimizer

    def forward_backward(self, data, targets) -> float:
        """One forward and backward pass; ``targets`` are labels (N,) or distributions (N, K). Returns the mean
        cross-entropy (nats)."""
        import mxnet as mx

        self.mod.forward_backward(mx.io.DataBatch(data=[data], label=[targets]))
        probs = self.mod.get_outputs()[0].asnumpy()
        self.loss = soft_cross_entropy(probs, targets.asnumpy())
        return self.loss

    def update(self, metric, labels) -> None:
        """Apply the gradients of the last pass; ``metric`` against the batch's (unmixed) ``labels``."""
        self.mod.update()
        self.mod.update_metric(metric, [labels])

    def predict(self, batch) -> np.ndarray:
        import mxnet as mx

        self.mod.forward(mx.io.DataBatch(data=batch.data), is_train=False)  # no label: it may be bound (N, K)
        return self.mod.get_outputs()[0].asnumpy()

    def get_params(self) -> tuple[dict, dict]:
        import mxnet as mx

        # BatchNorm writes its running statistics in backward outside the engine's dependency tracking: without
        # this wait, get_params copies them before the last batch's update (measured: bn1 mean off by ~0.2), and
        # the checkpoint scores differently from the model validated in memory.
        mx.nd.waitall()
        return self.mod.get_params()

    def _slots(self) -> list[tuple[Any, dict]]:
        """(updater, {param name: the updater's key}) for every updater holding optimizer state."""
        mod = self.mod
        names = mod._exec_group.param_names
        if mod._update_on_kvstore:
            updater = getattr(mod._kvstore, "_updater", None)
            return [(updater, {n: n for n in names})] if updater is not None else []
        ndev = len(mod._context)
        return [(mod._updater, {n: i * ndev + k for i, n in enumerate(names)}) for k in range(ndev)]

    def get_states(self) -> dict:
        return _read_states(self._slots())

    def set_states(self, states: dict) -> None:
        _write_states(self._slots(), states)


class GluonEngine:
    """The hybridized Gluon net from the same spec, ``gluon.Trainer`` on the same kvstore, the same files.

    With ``fast_graph`` batches run through :func:`resnetv2.fastpath.hybridize_for_training`'s block, which shares
    the net's Parameters (the Trainer and the checkpoints see the same arrays).
    """

    def __init__(self, args, contexts, cluster: Cluster, data_shape, arg_params, aux_params, optimizer: str,
                 optimizer_params: dict, fast_graph: bool = False, recipe: TrainSetup | None = None):
        import mxnet as mx
        from mxnet import gluon

        from symbols import get_net
        from symbols.gluon_resnet_v2 import load_symbol_params

        layout = data_layout(args)
        self.contexts = contexts
        self.net = get_net(args.num_classes, args.depth, layout.net_type, bn_mom=args.bn_mom)
        load_symbol_params(self.net, arg_params, aux_params, ctx=contexts)
        recipe = recipe or TrainSetup()
        for name, param in self.net.collect_params().items():
            # Gluon's Trainer decays every parameter by default: set the Symbol optimizer's multipliers explicitly.
            param.wd_mult = recipe.wd_mult.get(name, 1.0 if is_decayed(name) else 0.0)
            param.lr_mult = recipe.lr_mult.get(name, 1.0)
            if name in recipe.frozen:
                param.grad_req = "null"
        self.net.hybridize()
        self.block = self.net
        if fast_graph:
            from resnetv2.fastpath import hybridize_for_training

            per_context = (data_shape[0] // len(contexts),) + tuple(data_shape[1:])
            self.block = hybridize_for_training(self.net, per_context)
        params = {k: v for k, v in optimizer_params.items() if k != "rescale_grad"}
        if cluster.kv is not None and "async" in cluster.kv.type:
            raise UserError(f"--api gluon cannot train with --kv-store {cluster.kv.type} (Gluon's Trainer keeps "
                            f"the optimizer on the workers); use --api module")
        # With a dist kvstore the servers run the optimizer and every worker pulls the weights, as the Module path
        # does. (Updating on the workers from pulled gradients was measured to leave the two workers of a
        # dist_sync job with different weights in about half the runs.)
        distributed = cluster.kv is not None and "dist" in cluster.kv.type
        trained = {n: p for n, p in self.net.collect_params().items() if p.grad_req != "null"}
        self.trainer = gluon.Trainer(trained, optimizer, params, kvstore=cluster.kv, update_on_kvstore=distributed)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=not recipe.soft)
        self.batch_size = data_shape[0]
        # dist_sync sums the gradients of every worker's batch: normalise by the batch of the whole job.
        sync_workers = cluster.num_workers if cluster.kv is not None and "_sync" in cluster.kv.type else 1
        self.step_size = self.batch_size * sync_workers
        self._pending = None
        self._mx = mx

    @property
    def optimizer(self):
        return self.trainer._optimizer

    def forward_backward(self, data, targets) -> float:
        """As :meth:`ModuleEngine.forward_backward`."""
        from mxnet import autograd
        from mxnet.gluon.utils import split_and_load

        parts = split_and_load(data, self.contexts, even_split=True)
        target_parts = split_and_load(targets, self.contexts, even_split=True)
        with autograd.record():
            outputs = [self.block(x) for x in parts]
            losses = [self.loss_fn(o, y) for o, y in zip(outputs, target_parts)]
        autograd.backward(losses)
        self._pending = outputs
        total = sum(float(loss.sum().asscalar()) for loss in losses)
        return total / self.batch_size

    def update(self, metric, labels) -> None:
        """As :meth:`ModuleEngine.update`."""
        from mxnet.gluon.utils import split_and_load

        outputs = self._pending
        self.trainer.step(self.step_size)
        metric.update(split_and_load(labels, self.contexts, even_split=True),
                      [self._mx.nd.softmax(o) for o in outputs])

    def predict(self, batch) -> np.ndarray:
        from mxnet.gluon.utils import split_and_load

        parts = split_and_load(batch.data[0], self.contexts, even_split=True)
        return np.concatenate([self._mx.nd.softmax(self.block(x)).asnumpy() for x in parts])

    def get_params(self) -> tuple[dict, dict]:
        from symbols.gluon_resnet_v2 import symbol_params

        return symbol_params(self.net)

    def _slots(self) -> list[tuple[Any, dict]]:
        from symbols.gluon_resnet_v2 import symbol_name

        keys = {symbol_name(p.name): i for i, p in enumerate(self.trainer._params)}
        return [(updater, keys) for updater in self.trainer._updaters]

    def get_states(self) -> dict:
        return _read_states(self._slots())

    def set_states(self, states: dict) -> None:
        _write_states(self._slots(), states)


def _read_states(slots) -> dict:
    """``{'state:NAME': NDArray}`` from the first updater (every device's updater holds the same state)."""
    import mxnet as mx

    if not slots:
        return {}
    updater, keys = slots[0]
    out = {}
    for name, key in keys.items():
        state = updater.states.get(key)
        if state is None:
            continue
        if not hasattr(state, "copyto"):
            raise NotImplementedError(f"optimizer state of {name} is a {type(state).__name__}, not an NDArray")
        out[f"state:{name}"] = state.copyto(mx.cpu())
    return out


def _write_states(slots, states: dict) -> None:
    for updater, keys in slots:
        for name, key in keys.items():
            value = states.get(f"state:{name}")
            if value is None:
                continue
            updater.states[key] = value.copy()
            updater.states_synced[key] = False


# ------------------------------------------------------------------------------------------------- the loop
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


def _metrics(layout, num_classes: int):
    """accuracy + cross-entropy for CIFAR-size data, accuracy + top-5 for ImageNet-size (as the original)."""
    import mxnet as mx

    if layout.net_type == "imagenet" and num_classes > 5:
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


def _copy_synset(data_dir: str, prefix: str) -> None:
    source = Path(data_dir) / "synset.txt"
    if source.is_file():
        target = Path(prefix).parent / "synset.txt"
        text = source.read_text(encoding="utf-8")
        if not target.is_file() or target.read_text(encoding="utf-8", errors="replace") != text:
            atomic_write_text(target, text)


def build_symbol(args, data_shape):
    """The Symbol for the flags; with ``--memonger`` the planned (recomputing) graph."""
    from symbols import get_symbol

    layout = data_layout(args)
    sym = get_symbol(args.num_classes, args.depth, layout.net_type, bn_mom=args.bn_mom, workspace=args.workspace,
                     memonger=args.memonger)
    if args.memonger:
        from symbols.memonger import search_plan

        sym = search_plan(sym, data=(data_shape[0] // args.num_contexts,) + tuple(data_shape[1:]))
    return sym


def make_schedule(args: argparse.Namespace, begin_epoch: int, epoch_size: int, states: dict | None) -> Schedule:
    """The learning-rate curve of the run (:class:`resnetv2.schedule.Schedule`) for ``--lr-mode``.

    'step' keeps the original's meaning of ``--lr``: the rate in force at ``begin_epoch`` (default: the rate the
    checkpointed run would have used next, ``meta:next_lr``). 'cosine'/'poly': ``--lr`` is the curve's peak
    (default: the checkpointed run's ``meta:base_lr``, else 0.1), the curve is absolute in the update count.
    """

    def saved(key: str) -> float | None:
        return float(states[key].asnumpy()[0]) if states is not None and key in states else None

    if args.lr_mode == "step":
        lr = args.lr if args.lr is not None else saved("meta:next_lr")
        if lr is None:
            lr = rate_at_epoch(begin_epoch, DEFAULT_LR, args.lr_step_epochs, args.lr_factor)
    else:
        lr = args.lr if args.lr is not None else (saved("meta:base_lr") or DEFAULT_LR)
    return Schedule(args.lr_mode, lr, epoch_size, args.end_epoch, tuple(args.lr_step_epochs), args.lr_factor,
                    begin_epoch, args.warmup_epochs, args.warmup_lr)


def fit(args: argparse.Namespace) -> TrainResult:
    """Train as the flags in ``args`` say (already checked by :func:`resnetv2.train_args.resolve_args`)."""

    cluster = make_cluster(args.kv_store, args.num_contexts)
    prefix = args.model_prefix or default_prefix(args, cluster.rank)
    if cluster.num_workers > 1:
        # Every rank writes its own checkpoints and log, also where workers share a machine or a folder (the
        # default prefix ends in the rank already).
        if args.model_prefix:
            prefix = f"{prefix}-{cluster.rank}"
        if args.log_file:
            args.log_file = rank_path(args.log_file, cluster.rank, cluster.num_workers)
    args.model_prefix = prefix
    check_writable_dir(Path(prefix).parent, "checkpoint (--model-prefix)")
    if args.log_file:
        check_writable_dir(Path(args.log_file).parent, "--log-file")
    ckpt.remove_stale_partials(prefix)
    plan = plan_data(args, cluster)
    layout = data_layout(args)
    data_shape = (args.batch_size,) + tuple(layout.image_shape)
    sym = build_symbol(args, data_shape)

    if args.retrain:
        begin_epoch = ckpt.resolve_epoch(prefix, args.model_load_epoch)
        arg_params, aux_params = ckpt.load_params(prefix, begin_epoch)
        check_checkpoint_fits(sym, data_shape, arg_params, aux_params, ckpt.params_path(prefix, begin_epoch),
                              args.num_classes)
        states = ckpt.load_states(prefix, begin_epoch)
    else:
        existing = ckpt.list_epochs(prefix)
        if existing:
            raise UserError(f"{prefix} already has checkpoints (epochs {', '.join(map(str, existing))}); add "
                            f"--retrain to continue from the newest, or choose another --model-prefix")
        begin_epoch, states = 0, None
        arg_params, aux_params = init_params(sym, data_shape, args.seed)
        if args.last_gamma:
            for name in last_layer_names(arg_params):
                arg_params[name][:] = 0
    if begin_epoch >= args.end_epoch:
        raise UserError(f"checkpoint epoch {begin_epoch} is already at --end-epoch {args.end_epoch}: nothing to do")

    schedule = make_schedule(args, begin_epoch, plan.epoch_size, states)
    lr = schedule.base_lr
    optimizer_params = dict(learning_rate=lr, lr_scheduler=schedule, momentum=args.mom, wd=args.wd,
                            rescale_grad=1.0 / (args.batch_size * (cluster.num_workers if cluster.kv is not None
                                                                   and "_sync" in cluster.kv.type else 1)),
                            begin_num_update=begin_epoch * plan.epoch_size)

    atomic_write_text(f"{prefix}-args.json", json.dumps(saved_config(args), indent=1) + "\n")
    log = TrainingLog(args.log_file, cluster.rank)
    try:
        logging.info("start with arguments %s", args)
        if cluster.rank == 0:
            _copy_synset(args.data_dir, prefix)
        contexts = make_contexts(args)
        fast = uses_training_graph(args)
        setup = train_setup(args, list(arg_params))
        if args.api == "gluon":
            engine = GluonEngine(args, contexts, cluster, data_shape, arg_params, aux_params, args.optimizer,
                                 optimizer_params, fast_graph=fast, recipe=setup)
        else:
            engine = ModuleEngine(sym, contexts, cluster, data_shape, arg_params, aux_params, args.optimizer,
                                  optimizer_params, fast_graph=fast, recipe=setup)
        logging.info("training graph: %s", "resnetv2.fastpath.training_graph (--plain-graph to turn off)" if fast
                     else "as built")
        if states:
            engine.set_states(states)
        if args.retrain:
            logging.info("Loaded %s (%s optimizer state); continuing at Epoch[%d], lr %g",
                         ckpt.params_path(prefix, begin_epoch), "with" if states else "without", begin_epoch, lr)
        result = TrainResult(prefix, begin_epoch, args.end_epoch, plan.epoch_size)
        _epochs(args, engine, sym, plan, cluster, schedule, result, log)
    finally:
        log.close()
    return result


def _epochs(args, engine, sym, plan: DataPlan, cluster: Cluster, schedule: Schedule, result: TrainResult,
            log: TrainingLog) -> None:
    import mxnet as mx

    metric = _metrics(data_layout(args), args.num_classes)
    val_metric = _metrics(data_layout(args), args.num_classes)
    speedometer = mx.callback.Speedometer(args.batch_size, args.frequent)
    targets_of = target_recipe(args)
    for epoch in range(result.begin_epoch, args.end_epoch):
        tic = time.time()
        metric.reset()
        train_iter = _train_iter(args, plan, cluster, epoch)
        class_counts = np.zeros(args.num_classes, dtype=np.int64)  # what this worker read: its share of the data
        for nbatch in range(plan.epoch_size):
            try:
                batch = train_iter.next()
            except StopIteration:
                train_iter.reset()
                batch = train_iter.next()
            labels = batch.label[0].asnumpy().astype(np.int64)
            class_counts += np.bincount(labels[(labels >= 0) & (labels < args.num_classes)],
                                        minlength=args.num_classes)
            data, targets = batch.data[0], batch.label[0]
            if targets_of.soft:
                mixed, soft = targets_of.apply(data.asnumpy(), labels, epoch, nbatch)
                data = data if mixed is None else mx.nd.array(mixed, ctx=data.context)
                targets = mx.nd.array(soft, ctx=data.context)
            loss = engine.forward_backward(data, targets)
            if not math.isfinite(loss):
                raise UserError(f"training diverged: loss is {loss} at Epoch[{epoch}] Batch [{nbatch}]; stopped "
                                f"before updating, newest checkpoint kept: {_newest(result.prefix)} (retrain from "
                                f"it with a lower --lr)")
            engine.update(metric, batch.label[0])
            speedometer(mx.model.BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric, locals=None))
        del train_iter
        train_values = metric.get_global_name_value()
        for name, value in train_values:
            logging.info("Epoch[%d] Train-%s=%f", epoch, name, value)
        elapsed = time.time() - tic
        logging.info("Epoch[%d] Time cost=%.3f", epoch, elapsed)

        arg_params, aux_params = engine.get_params()
        num_update = (epoch + 1) * plan.epoch_size
        states = engine.get_states()
        states["meta:num_update"] = mx.nd.array([num_update], dtype="float64")
        states["meta:next_lr"] = mx.nd.array([schedule.curve(num_update + 1)], dtype="float64")
        states["meta:base_lr"] = mx.nd.array([schedule.base_lr], dtype="float64")
        saved = ckpt.save_checkpoint(result.prefix, epoch + 1, sym, arg_params, aux_params, states)
        logging.info('Saved checkpoint to "%s"', saved)

        val_values = evaluate(engine, _val_iter(args, plan, cluster), val_metric)
        for name, value in val_values:
            logging.info("Epoch[%d] Validation-%s=%f", epoch, name, value)
        stats: dict[str, Any] = {"epoch": epoch}
        stats.update({f"train-{n}": round(v, 6) for n, v in train_values})
        stats.update({f"val-{n}": round(v, 6) for n, v in val_values})
        # 12 significant digits: the rate 0.1 x 0.1 is logged as 0.01, not as its float product 0.010000000000000002
        stats.update({"lr": float(f"{schedule(num_update):.12g}"), "time": round(elapsed, 3),
                      "speed": round(plan.epoch_size * args.batch_size / elapsed, 2),
                      "images-read": int(class_counts.sum()), "class-counts-read": class_counts.tolist()})
        logging.info("json_stats: %s", json.dumps(stats))
        result.history.append(stats)
        _retain(args, result.prefix, epoch + 1, dict(val_values).get("accuracy", math.nan))
        log.commit()


def _retain(args, prefix: str, epoch: int, accuracy: float) -> None:
    """``--save-best``: record checkpoint ``epoch`` in ``PREFIX-best.json`` when its validation accuracy is the
    best so far; ``--keep-last N``: delete all but the newest N checkpoints and the best."""
    best = ckpt.read_best(prefix) if args.save_best else None
    if args.save_best and (best is None or accuracy > best["val-accuracy"]
                           or not ckpt.params_path(prefix, best["epoch"]).is_file()):
        ckpt.write_best(prefix, epoch, accuracy)
        best = {"epoch": epoch, "val-accuracy": accuracy}
        logging.info("Epoch[%d] best validation accuracy so far: checkpoint %s", epoch - 1,
                     ckpt.params_path(prefix, epoch))
    deleted = ckpt.prune(prefix, args.keep_last, keep=[best["epoch"]] if best else [])
    if deleted:
        logging.info("--keep-last %d: deleted the checkpoints of epochs %s", args.keep_last,
                     ", ".join(map(str, deleted)))


def _newest(prefix: str) -> str:
    epoch = ckpt.latest_epoch(prefix)
    return str(ckpt.params_path(prefix, epoch)) if epoch is not None else "none yet"
