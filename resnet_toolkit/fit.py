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
from resnet_toolkit.distill import load_teacher
from resnet_toolkit.engines import GluonEngine, ModuleEngine, TrainSetup
from resnet_toolkit.errors import UserError
from resnet_toolkit.precision import default_policy, describe
from resnet_toolkit.recipe import TargetRecipe, frozen_names, multipliers
from resnet_toolkit.records import check_class_count
from resnet_toolkit.runfiles import config_changes
from resnet_toolkit.runplan import RunPlan, plan_run
from resnet_toolkit.schedule import DEFAULT_LR, Schedule, rate_at_epoch
from resnet_toolkit.synset import SYNSET, copy_synset
from resnet_toolkit.train_args import RunConfig
from resnet_toolkit.trainer import Trainer, TrainResult
from resnet_toolkit.trainlog import TrainingLog
from resnet_toolkit.weights import (
    check_checkpoint_fits,
    check_symbol_file,
    finetune_params,
    init_params,
    zero_last_layers,
)
from symbols.spec import ResNetSpec


# ------------------------------------------------------------------------------------------ from the plan
def training_symbol(cfg: RunConfig, spec: ResNetSpec, batch_per_device: int):
    """The Symbol a run trains and checkpoints (:func:`symbols.build_symbol` of ``spec`` with the flags'
    ``--bn-mom``/``--workspace``); with ``--memonger`` the planned (recomputing) graph for ``batch_per_device``."""
    from symbols import build_symbol

    sym = build_symbol(spec, cfg.num_classes, bn_mom=cfg.bn_mom, workspace=cfg.workspace, memonger=cfg.memonger)
    if cfg.memonger:
        from symbols.memonger import search_plan

        sym = search_plan(sym, data=(batch_per_device,) + tuple(cfg.layout.image_shape))
    return sym


def train_setup(cfg: RunConfig, targets: TargetRecipe, param_names) -> TrainSetup:
    """The :class:`TrainSetup` of the flags (``--no-wd``, ``--lr-mult-body``, ``--freeze-stages``, ``--dtype``) for
    a network with ``param_names``, training against ``targets`` (soft targets with smoothing or mixup)."""
    wd_mult, lr_mult = multipliers(param_names, cfg.no_wd, cfg.lr_mult_body)
    return TrainSetup(cfg.num_classes, targets.soft, wd_mult, lr_mult, frozen_names(param_names, cfg.freeze_stages),
                      cfg.dtype, default_policy(cfg.dtype, cfg.precision_policy))


def make_schedule(cfg: RunConfig, begin_epoch: int, epoch_size: int, states: dict | None) -> Schedule:
    """The learning-rate curve of the run (:class:`resnet_toolkit.schedule.Schedule`) for ``--lr-mode``.

    'step' keeps the original's meaning of ``--lr``: the rate in force at ``begin_epoch`` (default: the rate the
    checkpointed run would have used next, ``meta:next_lr``). 'cosine'/'poly': ``--lr`` is the curve's peak
    (default: the checkpointed run's ``meta:base_lr``, else :data:`DEFAULT_LR`), the curve is absolute in the
    update count.
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


def starting_point(plan: RunPlan, sym) -> Start:
    """``--retrain`` (this run's newest or ``--model-load-epoch`` checkpoint with its optimizer state),
    ``--finetune`` (another checkpoint's matching arrays, fresh optimizer) or fresh weights."""
    cfg, prefix, shape = plan.cfg, plan.prefix, plan.data_shape
    if cfg.retrain:
        epoch = ckpt.resolve_epoch(prefix, cfg.model_load_epoch, flag="--retrain")
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


def make_engine(plan: RunPlan, sym, start: Start, optimizer_params: dict):
    """The engine of ``--api`` on the plan's devices, holding ``start``'s parameters."""
    cfg = plan.cfg
    common = dict(contexts=list(plan.contexts), cluster=plan.cluster, data_shape=plan.data_shape,
                  arg_params=start.arg_params, aux_params=start.aux_params, optimizer=cfg.optimizer,
                  optimizer_params=optimizer_params, training_graph=plan.training_graph,
                  recipe=train_setup(cfg, plan.targets, list(start.arg_params)))
    if cfg.api == "gluon":
        from symbols import build_net

        return GluonEngine(build_net(plan.spec, cfg.num_classes, bn_mom=cfg.bn_mom), **common)
    return ModuleEngine(sym, **common)


def fit(cfg: RunConfig) -> TrainResult:
    """Train as the resolved flags ``cfg`` say (:func:`resnet_toolkit.train_args.resolve_args`)."""
    plan = plan_run(cfg)
    prefix = plan.prefix
    ckpt.remove_stale_partials(prefix)
    sym = training_symbol(cfg, plan.spec, plan.batch_per_device)
    start = starting_point(plan, sym)
    if start.epoch >= cfg.end_epoch:
        raise UserError(f"checkpoint epoch {start.epoch} is already at --end-epoch {cfg.end_epoch}: nothing to do")
    teacher = (load_teacher(cfg.teacher, cfg.batch_size, cfg.layout.image_shape, cfg.num_classes)
               if cfg.teacher else None)
    # after the checkpoint and teacher checks (their messages name the more specific mismatch), before any write
    synset = Path(cfg.data_dir) / SYNSET
    check_class_count(cfg.num_classes, plan.data.train_rec, plan.data.val_rec, synset if synset.is_file() else None)

    schedule = make_schedule(cfg, start.epoch, plan.data.epoch_size, start.states)
    optimizer_params = dict(learning_rate=schedule.base_lr, lr_scheduler=schedule, momentum=cfg.mom, wd=cfg.wd,
                            rescale_grad=plan.grad_scale, begin_num_update=start.epoch * plan.data.epoch_size)

    as_trained = plan.flags_as_trained()
    changed = config_changes(as_trained)
    log = TrainingLog(plan.log_file, plan.cluster.rank)
    try:
        # The original's first line (MXNet's fit.py logs the argparse Namespace).
        logging.info("start with arguments %s", argparse.Namespace(**dataclasses.asdict(as_trained)))
        if changed:
            logging.info("--retrain with flags other than %s-args.json's: %s", prefix, "; ".join(changed))
        if plan.cluster.rank == 0:
            copy_synset(cfg.data_dir, Path(prefix).parent)
        engine = make_engine(plan, sym, start, optimizer_params)
        logging.info("cpu: %s; oneDNN %s runs %s", cpu_model(), probe().onednn, probe().isa_words())
        logging.info("training graph: %s", "resnet_toolkit.fastpath.training_graph (--plain-graph to turn off)"
                     if plan.training_graph else "as built")
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
                         float(f"{schedule(start.epoch * plan.data.epoch_size + 1):.12g}"))
        result = TrainResult(prefix, start.epoch, cfg.end_epoch, plan.data.epoch_size)
        Trainer(plan, engine, sym, schedule, result, log, teacher).train_model()
    finally:
        log.close()
    return result
