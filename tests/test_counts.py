"""One definition of top-1, top-5 and cross-entropy: :class:`resnet_toolkit.evaluation.Counts`, which the training
log's validation lines and tools/score.py share, gives the values of MXNet's metrics, which the original logged."""
import numpy as np
import pytest


@pytest.mark.parametrize("classes", [10, 1000])
def test_counts_equal_mxnet_metrics(classes):
    import mxnet as mx

    from resnet_toolkit.evaluation import Counts

    rng = np.random.default_rng(classes)
    counts = Counts(classes)
    metric = mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), mx.metric.TopKAccuracy(top_k=5),
                                            mx.metric.CrossEntropy()])
    for n in (32, 32, 7):  # a short last batch
        logits = rng.normal(0, 3, (n, classes)).astype(np.float32)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = rng.integers(0, classes, n)
        labels[:3] = probs[:3].argmax(axis=1)  # some right, so that top-1 is not 0
        counts.add(probs, labels)
        metric.update([mx.nd.array(labels)], [mx.nd.array(probs)])
    values = dict(metric.get_name_value())
    assert counts.images == 71
    assert counts.top1 == values["accuracy"] and counts.top1 > 0
    assert counts.topk == values["top_k_accuracy_5"]
    assert counts.cross_entropy == pytest.approx(values["cross-entropy"], rel=1e-12)


def test_counts_by_hand():
    from resnet_toolkit.evaluation import Counts

    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]], dtype=np.float32)
    counts = Counts(3, k=2)
    best = counts.add(probs, np.array([0, 0, 1]))
    assert best.tolist() == [[0, 1], [2, 1], [0, 1]]  # a tie goes to the lower class
    assert counts.confusion.tolist() == [[1, 0, 1], [1, 0, 0], [0, 0, 0]]
    assert (counts.top1, counts.topk) == (1 / 3, 2 / 3)
    assert counts.cross_entropy == pytest.approx(-(np.log(0.7) + np.log(0.2) + np.log(0.4)) / 3, rel=1e-6)
