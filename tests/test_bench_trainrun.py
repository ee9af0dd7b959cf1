"""bench/trainrun.py: the one way the bench scripts run train_resnet.py and read its per-epoch figures back."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.trainrun import cifar_flags, train


@pytest.mark.data
def test_train_reads_back_each_epoch_as_the_log_has_it(cifar_small_dir, tmp_path):
    """Two epochs of ResNet-8 on 320 real CIFAR-10 images: one record an epoch, whose val-accuracy is the
    Validation-accuracy line of the log file that cifar_flags asked for; the checkpoint lands under the prefix."""
    log = tmp_path / "train.log"
    flags = cifar_flags(cifar_small_dir, epochs=2, num_examples=320, seed=1, prefix=tmp_path / "m", depth=8,
                        log_file=log)
    stats, wall_s = train([*flags, "--preprocess-threads", "1"], "tiny")

    assert [s["epoch"] for s in stats] == [0, 1] and wall_s > 0
    logged = [float(v) for v in re.findall(r"Validation-accuracy=([\d.]+)", log.read_text())]
    assert [s["val-accuracy"] for s in stats] == pytest.approx(logged) and len(logged) == 2
    assert Path(f"{tmp_path / 'm'}-0002.params").is_file()


def test_a_failed_run_stops_the_bench_with_its_name_and_error(tmp_path):
    """A run that train_resnet.py refuses (no such data folder) ends the bench with the run's name, the exit
    status and train_resnet.py's own one-line reason, not a list of nothing."""
    flags = cifar_flags(tmp_path / "missing", epochs=1, num_examples=32, seed=0, prefix=tmp_path / "m")
    with pytest.raises(SystemExit, match=r"(?s)broken: train_resnet.py failed \(exit [1-9]\d*\)\n.*missing"):
        train(flags, "broken")
