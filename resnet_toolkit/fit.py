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
import logging
from dataclasses import dataclass, field
from pathlib import Path

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit import checkpoint as ckpt
from resnet_toolkit.capability import cpu_model, probe
from resnet_toolkit.cluster import Cluster, make_cluster, make_contexts
from resnet_toolkit.data import (
    plan_data,
    resolve_augmentation,
)
from resnet_toolkit.distill import load_teacher
from resnet_toolkit.distributed import rank_path
from resnet_toolkit.engines import GluonEngine, ModuleEngine, TrainSetup
from resnet_toolkit.errors import UserError
from resnet_toolkit.precision import default_policy, describe
from resnet_toolkit.recipe import frozen_names, multipliers
from resnet_toolkit.records import check_class_count
from resnet_toolkit.runfiles import config_changes, config_path, network_flags, read_saved_config, saved_config
from resnet_toolkit.schedule import Schedule, rate_at_epoch
from resnet_toolkit.synset import SYNSET, copy_synset
from resnet_toolkit.train_args import (
    RunConfig,
    check_writable_dir,
    default_prefix,
    uses_training_graph,
)
from resnet_toolkit.trainer import Trainer, TrainResult, target_recipe
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

    changed = config_changes(cfg)
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


def resolve_retrain(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its augmentation resolved (:func:`resnet_toolkit.data.resolve_augmentation`): each of
    ``--aug-level``, ``--mirror`` and ``--pad`` not given takes a ``--retrain``'s saved value, else the data type's
    default. A retrain whose flags build another network than its ``PREFIX-args.json`` names (depth, family,
    cardinality, width, classes, image shape) is refused here, before anything is written."""
    saved = read_saved_config(cfg)
    if saved is not None:
        check_same_network(network_flags(saved), network_flags(saved_config(cfg)), config_path(cfg),
                           cfg.model_prefix)
    level, mirror, pad = resolve_augmentation(cfg.layout, cfg.aug_level, cfg.mirror, cfg.pad, saved)
    return dataclasses.replace(cfg, aug_level=level, mirror=mirror, pad=pad)


