"""bench/grid.py: the one way the grid benches run train_resnet.py, read its per-epoch figures back and tabulate
them; and every bench module imports as ``python -m bench.NAME`` runs it."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from bench.grid import Run, Table, cifar_flags, train

BENCHES = ("throughput", "train_speed", "data_throughput", "backend_startup", "memonger", "recipe_ablation",
           "jpeg_quality", "precision_accuracy", "finetune")


@pytest.mark.data
def test_train_reads_back_each_epoch_as_the_log_has_it(cifar_small_dir, tmp_path):
    """Two epochs of ResNet-8 on 320 real CIFAR-10 images: one record an epoch, whose val-accuracy is the
    Validation-accuracy line of the log file that cifar_flags asked for; the checkpoint lands under the prefix."""
    log = tmp_path / "train.log"
    flags = cifar_flags(cifar_small_dir, epochs=2, num_examples=320, seed=1, prefix=tmp_path / "m", depth=8,
                        log_file=log)
    run = train([*flags, "--preprocess-threads", "1"], "tiny")

    assert [s["epoch"] for s in run.stats] == [0, 1] and run.wall_s > 0
    logged = [float(v) for v in re.findall(r"Validation-accuracy=([\d.]+)", log.read_text())]
    assert run.val_accuracy == pytest.approx(logged) and len(logged) == 2
    assert run.last == logged[-1] and run.best == max(logged)
    assert Path(f"{tmp_path / 'm'}-0002.params").is_file()


def test_a_failed_run_stops_the_bench_with_its_name_and_error(tmp_path):
    """A run that train_resnet.py refuses (no such data folder) ends the bench with the run's name, the exit
    status and train_resnet.py's own one-line reason, not a list of nothing."""
    flags = cifar_flags(tmp_path / "missing", epochs=1, num_examples=32, seed=0, prefix=tmp_path / "m")
    with pytest.raises(SystemExit, match=r"(?s)broken: train_resnet.py failed \(exit [1-9]\d*\)\n.*missing"):
        train(flags, "broken")


def test_run_figures_are_the_last_and_best_epoch():
    """A cell's figure is its last epoch (not its best, which is picked on the validation set); speed is the median
    over epochs."""
    run = Run([{"val-accuracy": 0.5, "train-accuracy": 0.4, "speed": 100.0},
               {"val-accuracy": 0.7, "train-accuracy": 0.6, "speed": 300.0},
               {"val-accuracy": 0.6, "train-accuracy": 0.8, "speed": 120.0}], 12.5)
    assert run.figures() == {"last": 0.6, "best": 0.7, "val-accuracy": [0.5, 0.7, 0.6], "wall_s": 12.5}
    assert run.train_accuracy == [0.4, 0.6, 0.8] and run.img_s == 120.0


def test_table_prints_rows_and_rewrites_its_json_after_each(tmp_path, capsys):
    """Each row is printed as it comes and the JSON file holds every record so far, so a grid stopped half-way
    keeps what it measured; the summary joins the file at the end."""
    path = tmp_path / "grid.json"
    table = Table(path, {"epochs": 2}, ["name", "top-1"])
    table.add({"config": "a", "last": 0.5}, ["a", "0.5000"])
    assert json.loads(path.read_text()) == {"epochs": 2, "runs": [{"config": "a", "last": 0.5}]}
    table.add({"config": "b", "last": 0.25}, ["b", "0.2500"])
    table.save(summary={"mean": 0.375})
    assert json.loads(path.read_text()) == {"epochs": 2, "runs": [{"config": "a", "last": 0.5},
                                                                  {"config": "b", "last": 0.25}],
                                            "summary": {"mean": 0.375}}
    assert capsys.readouterr().out.splitlines() == ["| name | top-1 |", "|---|---|", "| a | 0.5000 |",
                                                    "| b | 0.2500 |"]
    Table(None, {}, ["x"]).add({"x": 1}, [1])  # no file asked for: nothing written, nothing raised
    assert [p.name for p in tmp_path.iterdir()] == ["grid.json"]


@pytest.mark.parametrize("name", BENCHES)
def test_every_bench_imports_as_a_package_module_and_parses_help(name, capsys):
    """``python -m bench.NAME --help``: the module imports without a path hack and its parser answers."""
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out
