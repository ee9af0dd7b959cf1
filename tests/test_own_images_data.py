"""Your own images, checked before training (issue 35, items 2, 5, 6 and 7): records whose images do not decode,
images of another size than the network input, a class count the data contradicts, and a second data set packed
over the first one's synset.txt. Each bad input ends in one ``error:`` line, exit status 2, nothing written.

The data: scikit-learn's digits as packed by the demo (``digits_dir``), and small record files written here.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import run_wrapper, snapshot

import resnet_toolkit  # noqa: F401
from resnet_toolkit.data import get_layout, train_aug
from resnet_toolkit.errors import UserError, run_cli
from train_resnet import main

DIGITS = ["--data-type", "digits", "--depth", "8", "--batch-size", "32", "--num-examples", "64", "--end-epoch", "1",
          "--preprocess-threads", "1", "--frequent", "1000"]


def rewrite_records(src: Path, dst: Path, change) -> None:
    """Copy ``src`` (+ ``.idx``) to ``dst`` record by record; ``change(position, header, image bytes)`` returns the
    (header, image bytes) written: the RecordIO framing and the index stay intact."""
    import mxnet as mx

    reader = mx.recordio.MXIndexedRecordIO(str(src.with_suffix(".idx")), str(src), "r")
    writer = mx.recordio.MXIndexedRecordIO(str(dst.with_suffix(".idx")), str(dst), "w")
    for position, key in enumerate(reader.keys):
        header, data = change(position, *mx.recordio.unpack(reader.read_idx(key)))
        writer.write_idx(key, mx.recordio.pack(header, data))
    writer.close()
    reader.close()


def garbage(position: int, header, data: bytes):
    """Every image's bytes replaced by as many random ones: the framing parses, no image decodes."""
    return header, np.random.RandomState(position).bytes(len(data))


def write_images(rec: Path, size: int, labels: list[int]) -> None:
    """``rec`` (+ ``.idx``): one flat-grey ``size`` x ``size`` JPEG per label (keys 0, 1, 2, ...)."""
    import cv2
    import mxnet as mx

    writer = mx.recordio.MXIndexedRecordIO(str(rec.with_suffix(".idx")), str(rec), "w")
    for key, label in enumerate(labels):
        image = np.full((size, size, 3), 40 + 20 * label % 200, np.uint8)
        writer.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), key, 0),
                                               cv2.imencode(".jpg", image)[1].tobytes()))
    writer.close()


@pytest.fixture
def digits_copy(digits_dir, tmp_path) -> Path:
    """A copy of the packed digits (records and synset.txt) to damage."""
    return Path(shutil.copytree(digits_dir, tmp_path / "digits"))


def refused(argv, capsys, *folders: Path) -> str:
    """Run train_resnet.py in-process; assert exit 2, one ``error:`` line, no file under ``folders`` changed or
    added; return the message."""
    before = snapshot(*folders)
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2, err
    assert len(err) == 1 and ": error: " in err[0], err
    assert snapshot(*folders) == before
    return err[0].split(": error: ", 1)[1]


# ------------------------------------------------------------------------------------ item 2: undecodable images
@pytest.mark.parametrize("part", ["train", "val"])
def test_undecodable_images_are_refused_before_training(digits_copy, tmp_path, capsys, part):
    """Before: the corrupt training file trained to chance with exit 0, the corrupt validation file gave MXNet's
    traceback after the first checkpoint. Now: refused at the start, naming the keys."""
    rec = digits_copy / f"digits_{part}.rec"
    rewrite_records(move_aside(digits_copy, part), rec, garbage)
    (tmp_path / "model").mkdir()
    message = refused([*DIGITS, "--data-dir", digits_copy, "--model-prefix", tmp_path / "model" / "m"], capsys,
                      digits_copy, tmp_path / "model")
    assert message == (f"{rec}: 128 of 128 records checked are not decodable images (keys 0, 1, 2, 3, 4, ...); "
                       f"re-pack it from the images (all of them: python tools/im2rec_wrapper.py check --decode "
                       f"{rec})")
    assert list((tmp_path / "model").iterdir()) == []


def move_aside(folder: Path, part: str) -> Path:
    """The pristine digits file ``part`` moved aside in ``folder`` (the damaged copy takes its name)."""
    original = folder / f"digits_{part}.rec"
    aside = folder.parent / f"pristine_{part}.rec"
    original.rename(aside)
    original.with_suffix(".idx").rename(aside.with_suffix(".idx"))
    return aside


def test_check_decodes_and_names_the_undecodable_records(digits_copy, capsys):
    """`check` decoded nothing before (the corrupt file passed); now a sample by default, every image with
    --decode, and a bad file exits 2 naming the first keys."""
    rec = digits_copy / "digits_val.rec"
    rewrite_records(move_aside(digits_copy, "val"), rec,
                    lambda i, header, data: garbage(i, header, data) if i % 3 == 1 else (header, data))
    before = snapshot(digits_copy)
    code, out, err = run_wrapper(["check", rec, "--decode"], capsys)
    assert code == 2
    assert out.splitlines()[1] == "decoded 360 records: 120 not decodable; sizes (WxH): 32x32 (240)"
    assert err.strip().split(": error: ", 1)[1] == (f"{rec}: 120 of 360 records checked are not decodable images "
                           f"(keys 1, 4, 7, 10, 13, ...); re-pack it from the images (all of them: python "
                           f"tools/im2rec_wrapper.py check --decode {rec})")
    code, out, err = run_wrapper(["check", rec], capsys)
    assert code == 2 and "decoded 128 records: 43 not decodable" in out
    code, out, err = run_wrapper(["check", digits_copy / "digits_train.rec"], capsys)
    assert code == 0 and out.splitlines()[1] == "decoded 128 records: 0 not decodable; sizes (WxH): 32x32 (128)"
    assert snapshot(digits_copy) == before


def test_an_unsampled_bad_image_stops_validation_in_one_line(digits_copy):
    """An undecodable image the start-of-run sample misses: MXNet 1.9.1's validation iterator (no pad) stops with
    an OpenCV resize error in its C++ thread; reading through :func:`iter_batches` turns it into one line."""
    from resnet_toolkit.data import iter_batches, make_val_iter
    from resnet_toolkit.records import sample_keys

    rec = digits_copy / "digits_val.rec"
    assert 65 not in sample_keys(list(range(360)))
    rewrite_records(move_aside(digits_copy, "val"), rec,
                    lambda i, header, data: garbage(i, header, data) if i == 65 else (header, data))
    it = make_val_iter(rec, get_layout("digits"), 32, preprocess_threads=1)
    with pytest.raises(UserError) as exc:
        for _ in iter_batches(it, rec):
            pass
    assert str(exc.value).startswith(f"{rec}: MXNet cannot read a batch of it (")
    assert str(exc.value).endswith(f"); an image probably does not decode: list them with python "
                                   f"tools/im2rec_wrapper.py check --decode {rec}")
    assert "\n" not in str(exc.value)


def test_an_unsampled_bad_validation_image_ends_training_in_one_line(digits_copy, tmp_path, capsys):
    """The same file as the validation set of a run: one line and exit 2 after the epoch-1 checkpoint (kept),
    where MXNet's traceback ended the run before."""
    rec = digits_copy / "digits_val.rec"
    rewrite_records(move_aside(digits_copy, "val"), rec,
                    lambda i, header, data: garbage(i, header, data) if i == 65 else (header, data))
    before = snapshot(digits_copy)
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a) for a in [*DIGITS, "--data-dir", digits_copy, "--model-prefix", tmp_path / "m"]])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert err[0].split(": error: ", 1)[1].startswith(f"{rec}: MXNet cannot read a batch of it (")
    assert snapshot(digits_copy) == before
    assert (tmp_path / "m-0001.params").is_file()


# ------------------------------------------------------------------------------ item 5: image size vs the input
def folder_flags(folder: Path, shape: str) -> list[str]:
    """A ``--data-type folder`` run on ``folder``/t.rec and v.rec (2 classes) with input ``shape`` (C,H,W)."""
    depth = "8" if shape == "3,32,32" else "18"  # the smallest network of each stem
    return ["--data-type", "folder", "--data-dir", folder, "--train-rec", "t.rec", "--val-rec", "v.rec",
            "--image-shape", shape, "--num-classes", "2", "--depth", depth, "--batch-size", "8", "--end-epoch", "1",
            "--preprocess-threads", "1"]


@pytest.mark.parametrize("size, shape, message", [
    (256, "3,32,32", "{rec}: its images are 256x256 pixels or larger (record 0), far larger than the 32x32 network "
                     "input: training crops would see 1.6 % of an image; pack them at the size you train (pack "
                     "--resize N, N from 32 to 64) or pass --image-shape 3,256,256"),
    (32, "3,224,224", "{rec}: record 0 is a 32x32 image, smaller than the 224x224 network input: MXNet would "
                      "silently upscale it; pack the images at the size you train (pack --resize 224) or pass "
                      "--image-shape 3,32,32"),
])
def test_images_of_another_size_than_the_input_are_refused(tmp_path, capsys, size, shape, message):
    """Before: 256-pixel records trained as 3,32,32 (a 32-pixel crop of each) and 32-pixel ones as 3,224,224
    (upscaled), silently."""
    data = tmp_path / "data"
    data.mkdir()
    write_images(data / "t.rec", size, [0, 1] * 8)
    write_images(data / "v.rec", size, [0, 1] * 8)
    (tmp_path / "model").mkdir()
    got = refused([*folder_flags(data, shape), "--model-prefix", tmp_path / "model" / "m"], capsys, data,
                  tmp_path / "model")
    assert got == message.format(rec=data / "t.rec")


def report(*sizes: tuple[int, int]):
    """A :class:`DecodeReport` of decodable images of ``sizes`` (height, width), keys 0, 1, 2, ..."""
    from resnet_toolkit.records import DecodeReport

    return DecodeReport(Path("x.rec"), len(sizes), [], [(key, h, w) for key, (h, w) in enumerate(sizes)])


@pytest.mark.parametrize("data_type, level, sizes", [
    ("imagenet", 1, [(256, 341), (256, 256)]),    # train_256_q90 at level 1: random 224 crops
    ("imagenet", 2, [(480, 640), (480, 480)]),    # train_480_q90 scaled to 256..480, then 224 crops
    ("imagenet", 3, [(480, 720)]),
    ("imagenet", 4, [(480, 640), (1200, 1600)]),  # RandomResizedCrop uses any size from the input's up
    ("cifar10", 1, [(32, 32)]),                   # pad 4, random 32 crops
    ("digits", 0, [(32, 32)]),
])
def test_the_original_sizes_pass(data_type, level, sizes):
    from resnet_toolkit.records import check_image_sizes

    layout = get_layout(data_type)
    check_image_sizes(report(*sizes), layout.image_shape, train_aug(layout, level), "training")
    check_image_sizes(report((256, 300)) if data_type == "imagenet" else report(*sizes), layout.image_shape, {},
                      "validation")


@pytest.mark.parametrize("sizes, aug, found", [
    ([(480, 640)], {}, "its images are 640x480 pixels or larger (record 0)"),        # 480 records, center crop
    ([(256, 256), (200, 300)], {}, "record 1 is a 300x200 image, smaller than"),
    ([(1000, 1000)], train_aug(get_layout("imagenet"), 2), "crops would see 17.7 % of an image"),
])
def test_clearly_wrong_sizes_are_refused(sizes, aug, found):
    from resnet_toolkit.records import check_image_sizes

    with pytest.raises(UserError, match=re.escape(found)):
        check_image_sizes(report(*sizes), (3, 224, 224), aug, "validation")


# ------------------------------------------------------------------------------------- item 6: the class count
@pytest.mark.parametrize("classes, found", [
    ("5", "--num-classes 5 but the data has 10 classes ({data}/synset.txt names 10); pass --num-classes 10"),
    ("20", "--num-classes 20 but the data has 10 classes ({data}/synset.txt names 10); pass --num-classes 10"),
])
def test_a_class_count_the_data_contradicts_is_refused(digits_dir, tmp_path, capsys, classes, found):
    """Before: --num-classes 5 died mid-epoch with an IndexError traceback, --num-classes 20 trained silently."""
    (tmp_path / "model").mkdir()
    got = refused([*DIGITS, "--data-dir", digits_dir, "--num-classes", classes, "--model-prefix",
                   tmp_path / "model" / "m"], capsys, digits_dir, tmp_path / "model")
    assert got == found.format(data=digits_dir)


@pytest.mark.parametrize("synset, found", [
    (True, "{val} has labels up to 10 but {data}/synset.txt names 10 classes: they are not of one data set "
           "(re-pack them together)"),
    (False, "{val} has labels up to 10 but {train} only up to 9: validation holds classes training never sees"),
])
def test_validation_labels_beyond_the_classes_are_refused(digits_copy, tmp_path, capsys, synset, found):
    """Before: a traceback after the epoch-1 checkpoint (the validation metric's index out of range)."""
    rec = digits_copy / "digits_val.rec"
    rewrite_records(move_aside(digits_copy, "val"), rec,
                    lambda i, header, data: (header._replace(label=10.0) if i == 7 else header, data))
    if not synset:
        (digits_copy / "synset.txt").unlink()
    (tmp_path / "model").mkdir()
    got = refused([*DIGITS, "--data-dir", digits_copy, "--model-prefix", tmp_path / "model" / "m"], capsys,
                  digits_copy, tmp_path / "model")
    assert got == found.format(val=rec, train=digits_copy / "digits_train.rec", data=digits_copy)


# ------------------------------------------------------------------------------ item 7: one synset per folder
def image_tree(root: Path, classes: list[str]) -> Path:
    import cv2

    for i, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for j in range(2):
            cv2.imwrite(str(root / name / f"{j}.png"), np.full((16, 16, 3), 30 * i + 10 * j, np.uint8))
    return root


def test_packing_another_data_set_over_a_synset_is_refused(digits_copy, tmp_path, capsys):
    """Before: `list`/`pack` of another data set into the digits' folder silently replaced synset.txt (training the
    digits then failed). Now refused before anything is written; the same data set packs again."""
    src = image_tree(tmp_path / "pets", ["cat", "dog"])
    lists = tmp_path / "lists"
    assert run_wrapper(["list", src, "--out", lists, "--name", "pets"], capsys)[0] == 0
    synset = digits_copy / "synset.txt"
    message = (f"{synset} already holds another data set's class list (10 classes: 0, 1, "
               f"2, ...), not these 2 classes (cat, dog); pack into another --out (each data set in its own "
               f"folder, its records beside its synset.txt)")
    before = snapshot(digits_copy)
    for argv in (["list", src, "--out", digits_copy, "--name", "pets"],
                 ["pack", lists / "pets.lst", "--root", src, "--out", digits_copy, "--quiet"]):
        code, _, err = run_wrapper(argv, capsys)
        assert code == 2 and err.strip().split(": error: ", 1)[1] == message, err
        assert snapshot(digits_copy) == before
    code, _, err = run_wrapper(["digits", "--out", digits_copy, "--quiet"], capsys)
    assert code == 0, err
    assert synset.read_text() == "".join(f"{d}\n" for d in range(10))
