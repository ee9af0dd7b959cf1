#!/usr/bin/env bash
# `make demo`: the whole project on a fresh machine, no data needed, a few minutes on 2 CPU cores.
#   1. pack scikit-learn's handwritten digits (1,797 images, 10 classes) as 32x32 RecordIO;
#   2. train a CIFAR-style ResNet-20-v2 on them with train_resnet.py (the same script as for CIFAR-10/ImageNet);
#   3. plot the error curve from the training log; 4. classify one held-out digit with predict/predict.py.
# Everything goes under demo/ (git-ignored); a re-run replaces the previous demo's model, log and plot.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=demo
DATA=$OUT/data
PREFIX=$OUT/model/resnet-digits-20-0
LOG=$OUT/train.log
PNG=$OUT/curve.png
EPOCHS=${DEMO_EPOCHS:-8}

if [[ ! -f $DATA/digits_train.rec || ! -f $DATA/digits_val.rec ]]; then
    echo "== 1/4 packing scikit-learn digits into $DATA"
    "$PY" tools/im2rec_wrapper.py digits --out "$DATA"
else
    echo "== 1/4 digits already packed in $DATA"
fi

echo "== 2/4 training ResNet-20-v2 on digits for $EPOCHS epochs"
rm -rf "$OUT/model" "$LOG" "$PNG"
"$PY" train_resnet.py --data-type digits --data-dir "$DATA" --depth 20 --batch-size 32 --lr 0.1 \
    --end-epoch "$EPOCHS" --lr-steps 5,7 --wd 0.0001 --frequent 15 --seed 0 \
    --model-prefix "$PREFIX" --log-file "$LOG" --preprocess-threads 2

echo "== 3/4 plotting the curve"
"$PY" log/plot_curve.py --logs "$LOG" --out "$PNG"

echo "== 4/4 classifying one held-out digit (the first validation record)"
IMG=$OUT/held_out_digit.png
"$PY" - "$DATA/digits_val.rec" "$IMG" <<'PYEOF'
import sys

import resnet_toolkit  # noqa: F401  (before mxnet)
import cv2
import mxnet as mx

rec = mx.recordio.MXIndexedRecordIO(sys.argv[1][:-4] + ".idx", sys.argv[1], "r")
header, img = mx.recordio.unpack_img(rec.read_idx(rec.keys[0]))
cv2.imwrite(sys.argv[2], cv2.resize(img, (128, 128), interpolation=cv2.INTER_NEAREST))
print(f"{sys.argv[2]}: true label {int(header.label)}")
PYEOF
"$PY" predict/predict.py --prefix "$PREFIX" --epoch "$EPOCHS" --img "$IMG"

ACC=$(grep -o '"val-accuracy": [0-9.]*' "$LOG" | tail -1 | cut -d' ' -f2)
echo
echo "final validation accuracy: $ACC (360 held-out digits)"
echo "log:        $LOG"
echo "checkpoint: $PREFIX-$(printf %04d "$EPOCHS").params (+ -symbol.json, .states, synset.txt beside)"
echo "curve:      $PNG"
