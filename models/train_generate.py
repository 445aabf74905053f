#!/usr/bin/env python3
"""Trains the word-level language model of the built-in ``generate`` service.

Run it as ``python3 models/train_generate.py`` (the standard library is all it
needs); its outputs are committed, so neither the tests nor the server need
Python. Running it again with the same Python writes the same bytes.

The data set is the prose of Python's own reference documentation as the
standard library ships it: ``pydoc_data.topics`` (the text ``help()`` shows
for statements and keywords; Python Software Foundation License, version 2).
Only unindented lines are kept, so code samples and grammar rules stay out.

The model is a word bigram: for every word, how many times each word followed
it. Words are runs of letters (an inner apostrophe allowed), lower-cased,
and the punctuation ``. , ; : ? ! ( )`` is a word of its own; a word seen
fewer than ``MIN_COUNT`` times is dropped from the text.

Outputs, under ``models/generate/``:

* ``bigram.json``: ``{"source", "python", "vocab": [word, ...],
  "next": [[id, count, id, count, ...], ...]}``, where ``next[i]`` lists the
  words that followed ``vocab[i]``, most frequent first (ties by id). Every
  word has at least one successor (the text's last word is followed by
  ``.``).
* ``samples.json``: what :func:`generate` answers for a few prompts and seeds,
  which ``builtins/src/generate.rs`` and ``tests/it/stream_generate.rs``
  must reproduce token for token.

Generation (identical in Rust): the state is the prompt's last word that is
in the vocabulary, or ``.`` (a sentence start) when none is; each token is
drawn from the state's successors with probability proportional to their
counts, using SplitMix64 seeded with the request's seed: ``r = next() %
total``, then the first successor whose running count exceeds ``r``.
"""

import json
import os
import re
import sys
from collections import Counter, defaultdict

import pydoc_data.topics

MIN_COUNT = 3
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "generate")
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,;:?!()]")
MASK = (1 << 64) - 1
START = "."


def tokens_of(text):
    """The words and punctuation of ``text``, lower-cased."""
    return WORD.findall(text.lower())


def corpus():
    """The unindented prose of every help topic, in sorted topic order."""
    words = []
    for name in sorted(pydoc_data.topics.topics):
        for line in pydoc_data.topics.topics[name].splitlines():
            if not line.strip() or line[0].isspace():
                continue
            # reST underlines (*****, =====) are not words.
            if set(line.strip()) <= set("*=-~^"):
                continue
            words.extend(tokens_of(line))
        words.append(START)
    return words


def train(words):
    """The bigram table: vocabulary and successor counts."""
    freq = Counter(words)
    kept = [w for w in words if freq[w] >= MIN_COUNT]
    vocab = sorted(set(kept) | {START})
    index = {w: i for i, w in enumerate(vocab)}
    follow = defaultdict(Counter)
    for a, b in zip(kept, kept[1:]):
        follow[index[a]][index[b]] += 1
    follow[index[kept[-1]]][index[START]] += 1
    table = []
    for i in range(len(vocab)):
        pairs = sorted(follow[i].items(), key=lambda p: (-p[1], p[0]))
        if not pairs:
            pairs = [(index[START], 1)]
        table.append([x for pair in pairs for x in pair])
    return vocab, table


class SplitMix64:
    """Sebastiano Vigna's SplitMix64, as builtins/src/generate.rs has it."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def generate(vocab, table, prompt, max_tokens, seed):
    """The tokens the model answers (see the module's docstring)."""
    index = {w: i for i, w in enumerate(vocab)}
    state = index[START]
    for w in tokens_of(prompt):
        if w in index:
            state = index[w]
    rng = SplitMix64(seed)
    out = []
    for _ in range(max_tokens):
        row = table[state]
        total = sum(row[1::2])
        r = rng.next() % total
        for i in range(0, len(row), 2):
            if r < row[i + 1]:
                state = row[i]
                break
            r -= row[i + 1]
        out.append(vocab[state])
    return out


SAMPLES = [
    ("The with statement", 40, 0),
    ("The with statement", 40, 1),
    ("An exception", 25, 7),
    ("zzz no known words", 20, 42),
    ("", 12, 18446744073709551615),
]


def main():
    vocab, table = train(corpus())
    os.makedirs(OUT, exist_ok=True)
    model = {
        "source": "pydoc_data.topics (Python's help() text, PSF License 2.0), unindented lines",
        "python": "%d.%d.%d" % sys.version_info[:3],
        "vocab": vocab,
        "next": table,
    }
    with open(os.path.join(OUT, "bigram.json"), "w", encoding="utf-8") as f:
        json.dump(model, f, separators=(",", ":"))
        f.write("\n")
    samples = [
        {"prompt": p, "max_tokens": n, "seed": s, "tokens": generate(vocab, table, p, n, s)}
        for p, n, s in SAMPLES
    ]
    with open(os.path.join(OUT, "samples.json"), "w", encoding="utf-8") as f:
        json.dump(samples, f, indent=1)
        f.write("\n")
    pairs = sum(len(r) // 2 for r in table)
    print(f"vocabulary {len(vocab)} words, {pairs} bigrams")
    for s in samples:
        print(s["prompt"], "->", " ".join(s["tokens"]))


if __name__ == "__main__":
    main()
