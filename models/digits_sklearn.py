#!/usr/bin/env python3
"""The digits model as scikit-learn itself serves it, for MLServer.

``scripts/bench`` section ``oip`` compares tiffin's Open Inference Protocol
route with MLServer's (``mlserver-sklearn``), the server a KServe user would
otherwise pick for a scikit-learn model. MLServer cannot read tiffin's ONNX
graph, so this script fits the same classifier again (models/train.py's
``fit``: the same data set, split and seeds), checks that its weights are
those of the committed ``models/digits/digits.onnx`` (the same model, not a
look-alike), and writes it with joblib as a pipeline that takes the same
input: pixels in 0..=255, divided by 255 as the ONNX graph's ``normalise``
node does. Nothing is committed: the file is rebuilt where the bench runs.

Usage: digits_sklearn.py OUT.joblib (in a venv with models/train.py's pins
and mlserver-sklearn; scripts/bench.d/oip.sh makes it).
"""

import os
import sys

import joblib
import numpy as np
import onnx
from onnx import numpy_helper
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402


def main():
    out = sys.argv[1]
    clf, x, _, _, test_idx = train.fit()
    graph = onnx.load(os.path.join(train.OUT, "digits.onnx")).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    fitted = {
        "w1": clf.coefs_[0],
        "b1": clf.intercepts_[0],
        "w2": clf.coefs_[1],
        "b2": clf.intercepts_[1],
    }
    for name, value in fitted.items():
        if not np.array_equal(value.astype(np.float32), weights[name]):
            sys.exit(f"the refitted {name} differs from digits.onnx's: not the same model")
    # A scaler whose scale is fixed at 255: the ONNX graph's Div node.
    scale = StandardScaler(with_mean=False).fit(np.zeros((2, 64), dtype=np.float32))
    scale.scale_ = np.full(64, 255.0)
    model = Pipeline([("normalise", scale), ("mlp", clf)])
    held_out = x[test_idx].astype(np.float32)
    if not np.array_equal(model.predict(held_out), clf.predict(held_out / 255.0)):
        sys.exit("the pipeline's labels differ from the classifier's")
    joblib.dump(model, out)
    print(f"wrote {out}: the digits MLP of digits.onnx as a scikit-learn pipeline")


if __name__ == "__main__":
    main()
