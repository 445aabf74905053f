"""BentoML's metrics guide's sentiment service, in Python.

This is the service of BentoML's metrics guide (docs/source/guides/metrics.rst,
whose code is examples/custom_runner/nltk_pretrained_model/service.py in
BentoML's repository, 1.2 line) as the guide has it, with two changes where
the guide needs data downloads (nltk's VADER lexicon and punkt models):

- the scorer is `vaderSentiment.vaderSentiment.SentimentIntensityAnalyzer`
  (PyPI `vadersentiment`, which ships VADER's lexicon) instead of
  `nltk.sentiment.SentimentIntensityAnalyzer`;
- sentences are split with a regular expression instead of
  `nltk.sent_tokenize`: after a run of `.`, `!` or `?` followed by
  whitespace, as tiffin's Rust `sentiment_analyzer` splits them.

The same file serves unchanged under BentoML 1.2 (`bentoml serve-http
service.py:svc`) and under tiffin (`tiffin serve-http service.py:svc`); see
README.md beside it.
"""

from __future__ import annotations

import re
import time
import typing as t
from importlib.metadata import version
from statistics import mean
from typing import TYPE_CHECKING

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

import bentoml
from bentoml.io import JSON
from bentoml.io import Text

if TYPE_CHECKING:
    from bentoml._internal.runner.runner import RunnerMethod

    class RunnerImpl(bentoml.Runner):
        is_positive: RunnerMethod


# Stands in for nltk.__version__ in the guide's `nltk_version` label.
SCORER_VERSION = f"vaderSentiment-{version('vaderSentiment')}"

# A sentence ends at a run of . ! ? followed by ASCII whitespace (what
# tiffin's Rust sentiment_analyzer does; nltk.sent_tokenize needs punkt's data).
SENTENCE_END = re.compile(r"(?<=[.!?])[ \t\n\r\f]+")


def sent_tokenize(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


inference_duration = bentoml.metrics.Histogram(
    name="inference_duration",
    documentation="Duration of inference",
    labelnames=["nltk_version", "sentiment_cls"],
    buckets=(
        0.005,
        0.01,
        0.025,
        0.05,
        0.075,
        0.1,
        0.25,
        0.5,
        0.75,
        1.0,
        2.5,
        5.0,
        7.5,
        10.0,
        float("inf"),
    ),
)

polarity_counter = bentoml.metrics.Counter(
    name="polarity_total",
    documentation="Count total number of analysis by polarity scores",
    labelnames=["polarity"],
)


class NLTKSentimentAnalysisRunnable(bentoml.Runnable):
    SUPPORTED_RESOURCES = ("cpu",)
    SUPPORTS_CPU_MULTI_THREADING = False

    def __init__(self):
        self.sia = SentimentIntensityAnalyzer()

    @bentoml.Runnable.method(batchable=False)
    def is_positive(self, input_text: str) -> bool:
        start = time.perf_counter()
        scores = [
            self.sia.polarity_scores(sentence)["compound"]
            for sentence in sent_tokenize(input_text)
        ]
        inference_duration.labels(
            nltk_version=SCORER_VERSION, sentiment_cls=self.sia.__class__.__name__
        ).observe(time.perf_counter() - start)
        return mean(scores) > 0


nltk_runner = t.cast(
    "RunnerImpl", bentoml.Runner(NLTKSentimentAnalysisRunnable, name="nltk_sentiment")
)

svc = bentoml.Service("sentiment_analyzer", runners=[nltk_runner])


@svc.api(input=Text(), output=JSON())
async def analysis(input_text: str) -> dict[str, bool]:
    is_positive = await nltk_runner.is_positive.async_run(input_text)
    polarity_counter.labels(polarity=is_positive).inc()
    return {"is_positive": is_positive}
