"""Knowledge distillation (``--teacher``, ``--hard-weight``): the targets against hand computations, the batch the
teachers see, the saved configuration, and bad values."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import train_digits_model

import resnet_toolkit  # noqa: F401
from resnet_toolkit.distill import Teacher, distill_targets, parse_teacher
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.train_args import parse_args

DIGITS_FLAGS = ["--data-type", "digits", "--depth", "8", "--batch-size", "32", "--preprocess-threads", "1",
                "--frequent", "10", "--seed", "3"]


def test_distill_targets_by_hand():
    labels = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    teacher = np.array([[0.2, 0.8, 0.0], [0.6, 0.2, 0.2]])
    np.testing.assert_allclose(distill_targets(labels, teacher, 0.25),
                               [[0.40, 0.60, 0.00], [0.45, 0.275, 0.275]], atol=1e-7)
    np.testing.assert_allclose(distill_targets(labels, teacher, 1.0), labels, atol=1e-7)
    np.testing.assert_allclose(distill_targets(labels, teacher, 0.0), teacher, atol=1e-7)
    with pytest.raises(ValueError, match="differ"):
        distill_targets(labels, teacher[:, :2], 0.5)


def test_teachers_are_averaged():
    class Fake:
        def __init__(self, probs):
            self.probs = np.array(probs, dtype=np.float32)

        def predict(self, batch):
            return np.repeat(self.probs[None], len(batch), axis=0)

    teacher = Teacher([Fake([0.9, 0.1]), Fake([0.3, 0.7])], ["a", "b"])
    np.testing.assert_allclose(teacher.probabilities(np.zeros((2, 3, 8, 8))), [[0.6, 0.4]] * 2, atol=1e-7)


def test_parse_teacher():
    assert parse_teacher("runs/a/m,12") == ("runs/a/m", "12")
    assert parse_teacher("runs/a/m") == ("runs/a/m", None)
    with pytest.raises(UserError, match="must be a number"):
        parse_teacher("runs/a/m,last")


@pytest.fixture(scope="module")
def digits_teacher(digits_dir, tmp_path_factory):
    """A ResNet-8 trained 2 epochs on the digits (77 % held-out): a teacher whose predictions are far from one-hot."""
    return train_digits_model(digits_dir, tmp_path_factory.mktemp("teacher") / "t", 2)


def test_student_trains_against_labels_and_the_teachers_view_of_the_mixed_batch(digits_dir, digits_teacher, tmp_path,
                                                                               monkeypatch):
    """Every batch's targets are W x the mixed one-hot labels + (1-W) x the teacher's probabilities for the batch
    the student trains on (mixed): subtracting the teacher's part, computed here independently, leaves rows that
    mix at most two one-hot labels. Given the unmixed batch, the teacher's part would not cancel."""
    from resnet_toolkit.engines import ModuleEngine
    from resnet_toolkit.fit import fit
    from resnet_toolkit.predictor import load_model

    seen = []
    forward_backward = ModuleEngine.forward_backward

    def spy(self, data, targets):
        seen.append((data.asnumpy().copy(), targets.asnumpy().copy()))
        return forward_backward(self, data, targets)

    monkeypatch.setattr(ModuleEngine, "forward_backward", spy)
    cfg = parse_args([*DIGITS_FLAGS, "--data-dir", str(digits_dir), "--end-epoch", "1", "--num-examples", "96",
                      "--mixup", "1.0", "--teacher", f"{digits_teacher},2", "--hard-weight", "0.25",
                      "--model-prefix", str(tmp_path / "s")])
    fit(cfg)
    assert len(seen) == 3
    teacher = load_model(digits_teacher, 2, batch_size=32)
    for data, targets in seen:
        probs = teacher.predict(data)
        assert probs.max(axis=1).mean() < 0.99  # soft enough for the check below to mean something
        labels_part = (targets - 0.75 * probs) / 0.25
        np.testing.assert_allclose(labels_part.sum(axis=1), 1.0, atol=1e-4)
        assert labels_part.min() > -1e-4 and labels_part.max() < 1 + 1e-4
        assert ((labels_part > 1e-4).sum(axis=1) <= 2).all()
    saved = json.loads((tmp_path / "s-args.json").read_text())
    assert saved["teacher"] == [f"{digits_teacher},2"] and saved["hard-weight"] == 0.25


def test_teacher_list_survives_the_saved_configuration(digits_dir, tmp_path):
    """--config of a PREFIX-args.json naming two teachers resolves to the same two (one word each, not joined)."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"data-type": "digits", "depth": 8, "teacher": ["a/m,3", "b/m"], "hard-weight": 0.3}))
    cfg = parse_args(["--config", str(path), "--data-dir", str(digits_dir)])
    assert cfg.teacher == ["a/m,3", "b/m"] and cfg.hard_weight == 0.3


@pytest.mark.parametrize("extra, message", [
    (["--hard-weight", "1.5", "--teacher", "x"], "--hard-weight must be in [0, 1], got 1.5"),
    (["--hard-weight", "nan", "--teacher", "x"], "--hard-weight must be in [0, 1], got nan"),
    (["--hard-weight", "0.3"], "--hard-weight needs --teacher"),
    (["--teacher", "nowhere/m"], "--teacher nowhere/m: no checkpoint m-NNNN.params (looked for m-*.params in "),
    (["--teacher", "TEACHER,7"], "no checkpoint"),
    (["--teacher", "TEACHER", "--num-classes", "12"], "it predicts 10 classes, this run trains 12"),
])
def test_bad_distillation_values_are_one_clear_line(extra, message, digits_dir, digits_teacher, tmp_path, capsys):
    from train_resnet import main

    extra = [e.replace("TEACHER", digits_teacher) for e in extra]
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [*DIGITS_FLAGS, "--data-dir", str(digits_dir), "--model-prefix", str(tmp_path / "m"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []
