"""resnet_toolkit/data.py: aug presets, iterators on real packed data, partitioning and record-file checks."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from resnet_toolkit.data import (
    AUG_PRESETS,
    LAYOUTS,
    get_layout,
    make_train_iter,
    make_val_iter,
    train_aug,
)
from resnet_toolkit.errors import UserError
from resnet_toolkit.im2rec import Item, pack_items
from resnet_toolkit.images import Transform
from resnet_toolkit.records import check_record_file, read_records


def _batches(it, n: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        out.append(it.next().data[0].asnumpy())
    return out


def test_aug_presets_are_the_originals():
    imagenet, cifar, digits = LAYOUTS["imagenet"], LAYOUTS["cifar10"], LAYOUTS["digits"]
    assert train_aug(imagenet, 1) == dict(rand_crop=True, rand_mirror=True)
    level2 = dict(rand_crop=True, rand_mirror=True, max_random_scale=1.0, min_random_scale=0.533,
                  max_aspect_ratio=0.25, random_h=36, random_s=50, random_l=50, fill_value=127)
    assert train_aug(imagenet, 2) == level2
    assert train_aug(imagenet, 3) == {**level2, "max_rotate_angle": 10, "max_shear_ratio": 0.1}
    for level in (1, 2, 3):
        assert train_aug(cifar, level) == dict(rand_crop=True, rand_mirror=True, pad=4, fill_value=127)
        assert train_aug(digits, level)["rand_mirror"] is False
    assert set(AUG_PRESETS) == {0, 1, 2, 3, 4}
    assert train_aug(imagenet, 4) == dict(rand_mirror=True, random_resized_crop=True, min_random_area=0.08,
                                          max_random_area=1.0, min_aspect_ratio=3 / 4, max_aspect_ratio=4 / 3)
    assert train_aug(cifar, 4) == train_aug(cifar, 1)
    with pytest.raises(UserError, match="--aug-level must be one of"):
        train_aug(imagenet, 5)
    with pytest.raises(UserError, match="unknown data type 'mnist'; valid: cifar10, imagenet, digits"):
        get_layout("mnist")


def test_random_resized_crop_level_runs_in_mxnet(digits_dir):
    """Level 4's arguments are ImageRecordIter's own: MXNet accepts them and a batch comes out at the requested
    size (random crops of 32x32 digits resized to 48x48), different for another seed."""
    from resnet_toolkit.data import make_train_iter

    batches = [make_train_iter(digits_dir / "digits_train.rec", LAYOUTS["imagenet"], 4, aug_level=4, seed=seed,
                               preprocess_threads=1, data_shape=(3, 48, 48)).next().data[0].asnumpy()
               for seed in (0, 1)]
    assert batches[0].shape == (4, 3, 48, 48) and not (batches[0] == batches[1]).all()


def test_layout_paths():
    imagenet = LAYOUTS["imagenet"]
    assert imagenet.train_path("d", 1).name == "train_256_q90.rec"
    assert imagenet.train_path("d", 2).name == imagenet.train_path("d", 3).name == "train_480_q90.rec"
    assert imagenet.val_path("d").name == "val_256_q90.rec"
    assert LAYOUTS["cifar10"].train_path("d", 3).name == "cifar10_train.rec"


@pytest.mark.data
def test_cifar_val_iterator_is_the_records_and_repeats(cifar_rec_dir):
    """Val: exactly the stored pixels (RGB, CHW, 0..255, no mean) in file order, identical across epochs."""
    layout = get_layout("cifar10")
    rec = layout.val_path(cifar_rec_dir)
    it = make_val_iter(rec, layout, 100, preprocess_threads=1)
    first = it.next()
    data, labels = first.data[0].asnumpy(), first.label[0].asnumpy()
    second = it.next().data[0].asnumpy()
    records = []
    for i, (_, label, img) in enumerate(read_records(rec)):
        records.append((label, img))
        if i == 99:
            break
    assert data.shape == (100, 3, 32, 32)
    assert (data == np.stack([img[:, :, ::-1].transpose(2, 0, 1) for _, img in records])).all()
    assert (labels == [lab for lab, _ in records]).all()
    it.reset()
    again = _batches(it, 2)
    assert (again[0] == data).all() and (again[1] == second).all()


@pytest.mark.data
def test_cifar_train_level1_pads_with_127_and_is_seeded(cifar_rec_dir):
    """Aug level 1 on CIFAR: 32x32 crops of the image padded by 4 with 127, so many crops show a full border
    row or column of 127 (none of the val images do); the same seed replays the same batch, another seed not."""
    layout = get_layout("cifar10")
    it = make_train_iter(layout.train_path(cifar_rec_dir, 1), layout, 256, aug_level=1, seed=0, preprocess_threads=1)
    data = it.next().data[0].asnumpy()
    assert data.shape == (256, 3, 32, 32)

    def border_127(x):
        return ((x[:, :, 0, :] == 127).all(axis=(1, 2)) | (x[:, :, -1, :] == 127).all(axis=(1, 2))
                | (x[:, :, :, 0] == 127).all(axis=(1, 2)) | (x[:, :, :, -1] == 127).all(axis=(1, 2)))

    assert border_127(data).mean() > 0.5
    val = make_val_iter(layout.val_path(cifar_rec_dir), layout, 256, preprocess_threads=1).next().data[0].asnumpy()
    assert border_127(val).mean() < 0.02
    # padding is never wider than 4: the central 24x24 is image content, not fill
    assert not (data[:, :, 4:28, 4:28] == 127).all(axis=(1, 2, 3)).any()
    same = make_train_iter(layout.train_path(cifar_rec_dir, 1), layout, 256, seed=0, preprocess_threads=1)
    other = make_train_iter(layout.train_path(cifar_rec_dir, 1), layout, 256, seed=1, preprocess_threads=1)
    assert (same.next().data[0].asnumpy() == data).all()
    assert not (other.next().data[0].asnumpy() == data).all()


@pytest.fixture(scope="module")
def photos_480(tmp_path_factory):
    """The three photos packed at shorter side 480 (the level-2/3 training file) and 256 (val)."""
    from helpers import PHOTOS, need

    photos = need(PHOTOS)
    out = tmp_path_factory.mktemp("photos_rec")
    items = [Item(p.name, i % 2, (lambda p=p: p.read_bytes())) for i, p in enumerate(sorted(photos.glob("*.jpg")))]
    pack_items(items, out / "train_480_q90.rec", Transform(resize=480, quality=90), progress=False)
    pack_items(items, out / "val_256_q90.rec", Transform(resize=256, quality=90), progress=False)
    return out


@pytest.mark.data
@pytest.mark.parametrize("level", [2, 3])
def test_imagenet_levels_2_3_give_224_and_vary_by_epoch_seed(photos_480, level):
    """Level 2/3 batches are 224x224; epoch seeds 0 and 1 differ, and seed 0 again replays epoch 0 exactly."""
    layout = get_layout("imagenet")
    rec = layout.train_path(photos_480, level)
    assert rec.name == "train_480_q90.rec"

    def epoch(seed):
        it = make_train_iter(rec, layout, 3, aug_level=level, seed=seed, preprocess_threads=1)
        return it.next().data[0].asnumpy()

    e0, e1, e0_again = epoch(0), epoch(1), epoch(0)
    assert e0.shape == (3, 3, 224, 224)
    assert (e0 == e0_again).all()
    assert np.abs(e0 - e1).mean() > 5.0
    assert 20 < e0.mean() < 235  # real pixels, not fill


@pytest.mark.data
def test_imagenet_val_is_center_crop_and_repeats(photos_480):
    """Val at 224: the center 224x224 of each 256-short-side record, the same on every epoch."""
    layout = get_layout("imagenet")
    rec = layout.val_path(photos_480)
    it = make_val_iter(rec, layout, 3, preprocess_threads=1)
    data = it.next().data[0].asnumpy()
    it.reset()
    assert (it.next().data[0].asnumpy() == data).all()
    for k, (_, _, img) in enumerate(read_records(rec)):
        h, w = img.shape[:2]
        top, left = (h - 224) // 2, (w - 224) // 2
        center = img[top:top + 224, left:left + 224, ::-1].transpose(2, 0, 1)
        assert np.abs(center.astype(float) - data[k]).mean() < 1.0


def test_partitions_are_disjoint_and_complete(tmp_path):
    """num_parts=2: the two parts' records are disjoint and together the whole file."""
    items = [Item(str(i), i % 3, (lambda i=i: np.full((32, 32, 3), i, np.uint8))) for i in range(40)]
    rec = tmp_path / "digits_val.rec"
    pack_items(items, rec, Transform(exact_size=(32, 32), encoding=".png"), progress=False)
    layout = get_layout("digits")
    seen = []
    for part in range(2):
        it = make_val_iter(rec, layout, 4, num_parts=2, part_index=part, preprocess_threads=1)
        values = []
        for batch in it:
            d = batch.data[0].asnumpy()[: 4 - batch.pad]
            values += [int(v) for v in d[:, 0, 0, 0]]
        seen.append(values)
    assert len(seen[0]) == len(seen[1]) == 20
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(40))


def test_check_record_file_names_missing_file_and_command(tmp_path):
    layout = get_layout("cifar10")
    with pytest.raises(UserError) as exc:
        make_train_iter(tmp_path / "cifar10_train.rec", layout, 8)
    assert str(exc.value) == (f"{tmp_path / 'cifar10_train.rec'}: no such file (make it with: "
                              "python tools/im2rec_wrapper.py cifar10 SOURCE --out DATA_DIR)")


def test_check_record_file_accepts_split_records(tmp_path):
    """A record whose bytes contain the RecordIO magic is stored in parts; the check follows them to the end."""
    import mxnet as mx

    rec, idx = tmp_path / "x.rec", tmp_path / "x.idx"
    writer = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    magic = np.uint32(0xCED7230A).tobytes()
    writer.write_idx(0, b"abcd" + magic + b"efgh")
    writer.write_idx(1, b"0123" + magic * 3 + b"4567" + magic)
    writer.close()
    assert check_record_file(rec) == (rec, idx)
    copy = tmp_path / "y.rec"
    shutil.copy(rec, copy)
    shutil.copy(idx, tmp_path / "y.idx")
    with open(copy, "r+b") as fh:
        fh.truncate(copy.stat().st_size - 4)
    with pytest.raises(UserError, match="truncated"):
        check_record_file(copy)
