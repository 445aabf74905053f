#!/usr/bin/env python3
"""Trains the ONNX models tiffin ships, and writes the files the tests use.

Run it as ``scripts/train-models`` (which makes the pinned venv under
``target/pyvenv-train``); its outputs are committed, so neither the tests nor
the server ever need Python or a download. Running it again writes the same
bytes: the split and the network's initial weights come from fixed seeds, the
data set is the copy scikit-learn ships (``sklearn.datasets.load_digits``:
1,797 8x8 images of handwritten digits, the UCI "optdigits" test set), and
the ONNX file is written with fixed producer fields.

Outputs, under ``models/digits/``:

* ``digits.onnx``: a multilayer perceptron (64 -> 64 ReLU -> 10) as a graph of
  standard ONNX operators only (``Div``, ``MatMul``, ``Add``, ``Relu``,
  ``Softmax``, ``ArgMax``; opset 13). It takes ``pixels``, float32
  ``[N, 64]``: the 8x8 image row by row, each pixel in 0..=255 where 255 is
  full ink (the data set's 0..=16 scaled by 255/16 and rounded, which is what
  a PNG stores). It answers ``probabilities``, float32 ``[N, 10]``, and
  ``label``, int64 ``[N]``. The graph is built by hand from the fitted
  weights rather than with skl2onnx, whose classifier converters emit
  ``ai.onnx.ml`` operators (``ZipMap``, ``ArrayFeatureExtractor``) that
  pure-Rust engines such as tract lack.
* ``test/NNNN.png`` and ``test/labels.csv``: the held-out 20 % (360 images,
  stratified), as 8x8 8-bit grayscale PNGs, never seen in training.
* ``samples/digit-K.png``: one held-out image per digit, scaled up to 64x64
  (nearest neighbour) so a person can see it, for the README's curl line.
* ``../testdata/unsupported-op.onnx``: a well-formed ONNX file whose only
  operator exists nowhere (``tiffin.test.TiffinNoSuchOperator``).
* ``metrics.json``: held-out accuracy of scikit-learn's own predictions and of
  the ONNX graph evaluated by onnx's reference evaluator (they must agree).
"""

import csv
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

SEED = 20260
HIDDEN = 64
OPSET = 13
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "digits")


def pixels(images):
    """The data set's 0..=16 intensities as the 0..=255 a PNG stores."""
    return np.rint(images * (255.0 / 16.0)).astype(np.uint8)


def build_graph(clf):
    """The fitted MLP as standard ONNX operators."""
    w1, w2 = clf.coefs_
    b1, b2 = clf.intercepts_
    inits = [
        numpy_helper.from_array(np.array([255.0], dtype=np.float32), "scale"),
        numpy_helper.from_array(w1.astype(np.float32), "w1"),
        numpy_helper.from_array(b1.astype(np.float32), "b1"),
        numpy_helper.from_array(w2.astype(np.float32), "w2"),
        numpy_helper.from_array(b2.astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Div", ["pixels", "scale"], ["x"], name="normalise"),
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="dense1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="bias1"),
        helper.make_node("Relu", ["h1"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "w2"], ["z0"], name="dense2"),
        helper.make_node("Add", ["z0", "b2"], ["logits"], name="bias2"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0, name="argmax"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 64])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="tiffin models/train.py",
        producer_version="1",
    )
    # Readers older than the installed onnx package must still load it.
    model.ir_version = 8
    model.doc_string = (
        "Handwritten digits (scikit-learn load_digits), MLP 64-64-10. "
        "Input pixels float32 [N,64] in 0..255 (255 = ink); "
        "outputs probabilities float32 [N,10], label int64 [N]."
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_unsupported(path):
    """A valid ONNX file whose one node is an operator no engine has, for
    the test that a worker refuses it by name (``tests/onnx.rs``)."""
    node = helper.make_node("TiffinNoSuchOperator", ["x"], ["y"], domain="tiffin.test")
    graph = helper.make_graph(
        [node],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("tiffin.test", 1)],
        producer_name="tiffin models/train.py",
        producer_version="1",
    )
    model.ir_version = 8
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def fit():
    """The fitted classifier, the data set's pixels and labels, and the
    training and held-out indices (models/digits_sklearn.py fits it too)."""
    digits = load_digits()
    x = pixels(digits.images.reshape(len(digits.images), 64))
    y = digits.target
    idx = np.arange(len(y))
    train_idx, test_idx = train_test_split(
        idx, test_size=0.2, random_state=SEED, stratify=y
    )
    clf = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        alpha=1e-3,
        max_iter=600,
        random_state=SEED,
    )
    clf.fit(x[train_idx].astype(np.float32) / 255.0, y[train_idx])
    return clf, x, y, train_idx, test_idx


def main():
    clf, x, y, _, test_idx = fit()
    model = build_graph(clf)
    os.makedirs(os.path.join(OUT, "test"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "samples"), exist_ok=True)
    with open(os.path.join(OUT, "digits.onnx"), "wb") as f:
        f.write(model.SerializeToString())

    x_test = x[test_idx]
    y_test = y[test_idx]
    sk_acc = float((clf.predict(x_test.astype(np.float32) / 255.0) == y_test).mean())
    ref = ReferenceEvaluator(model)
    probs, labels = ref.run(None, {"pixels": x_test.astype(np.float32)})
    onnx_acc = float((labels == y_test).mean())
    if abs(sk_acc - onnx_acc) > 1e-9:
        sys.exit(f"ONNX graph disagrees with scikit-learn: {onnx_acc} vs {sk_acc}")

    with open(os.path.join(OUT, "test", "labels.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label"])
        for i, (img, label) in enumerate(zip(x_test, y_test)):
            name = f"{i:04d}.png"
            Image.fromarray(img.reshape(8, 8), mode="L").save(
                os.path.join(OUT, "test", name), optimize=True
            )
            w.writerow([name, int(label)])

    for k in range(10):
        first = int(np.flatnonzero(y_test == k)[0])
        big = Image.fromarray(x_test[first].reshape(8, 8), mode="L").resize(
            (64, 64), Image.NEAREST
        )
        big.save(os.path.join(OUT, "samples", f"digit-{k}.png"), optimize=True)

    os.makedirs(os.path.join(HERE, "testdata"), exist_ok=True)
    write_unsupported(os.path.join(HERE, "testdata", "unsupported-op.onnx"))

    metrics = {
        "data": "sklearn.datasets.load_digits",
        "train": int(len(train_idx)),
        "test": int(len(test_idx)),
        "seed": SEED,
        "sklearn_accuracy": round(sk_acc, 6),
        "onnx_reference_accuracy": round(onnx_acc, 6),
        "max_probability_error": float(
            np.abs(probs - clf.predict_proba(x_test.astype(np.float32) / 255.0)).max()
        ),
    }
    with open(os.path.join(OUT, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(metrics, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
