"""Posts a corpus of review texts to two `/analysis` endpoints and prints
every text on which they answer differently (status or body).

Usage: python compare.py URL_A URL_B [CORPUS_FILE]
e.g.   python compare.py http://127.0.0.1:3000/analysis http://127.0.0.1:3001/analysis

CORPUS_FILE has one text per line (a literal backslash-n stands for a line
break); without it the built-in corpus below is used: sentences that exercise
VADER's rules (negation, "but", capitals, exclamation marks, intensifiers,
idioms, emoticons, emoji) and the sentence splitting.
Exits 1 when any answer differs. Needs only the standard library.
"""

import sys
import urllib.error
import urllib.request

CORPUS = [
    "I love this product!",
    "This is terrible. I hate it.",
    "BentoML is great",
    "The food was good but the service was horrible.",
    "The food was not good.",
    "The food was GREAT!!!",
    "It is kind of okay, I guess.",
    "It isn't bad at all.",
    "Not the worst thing I have bought.",
    "I'm not sure how I feel about it.",
    "It works. It broke after a week. Support never answered.",
    "Best purchase ever :) would buy again",
    "Worst purchase ever :( never again",
    "Meh.",
    "The plot was dull... but the acting? Superb!",
    "The battery life is extremely good, the screen is very bright.",
    "The battery barely lasts a day, which is somewhat disappointing.",
    "I don't hate it.",
    "Without a doubt the best cafe in town.",
    "It was the least helpful manual I have read.",
    "The kill switch saved my life.",
    "Yeah right, as if that would work.",
    "I ❤️ it 😀",
    "Das ist nicht gut.",
    "3.5 stars. Could be better.",
    "Wow!! Great... ok",
    "No problems so far.",
    "Never been happier with a phone.",
    "This is the bomb",
    "I laughed so hard I cried, a hilarious film.",
    "The price is fair and the quality is decent, nothing special though.",
    "Absolutely awful customer service.   Fast shipping though!",
    "  leading and trailing whitespace is fine.  ",
    "first line is sad.\nsecond line is happy!",
    "12345",
    "",
]


def ask(url, text):
    req = urllib.request.Request(url, data=text.encode(), headers={"Content-Type": "text/plain"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    a, b = sys.argv[1], sys.argv[2]
    corpus = CORPUS
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            corpus = [line.rstrip("\n").replace("\\n", "\n") for line in f]
    differ = 0
    for text in corpus:
        ra, rb = ask(a, text), ask(b, text)
        if ra != rb:
            differ += 1
            print(f"DIFFER {text!r}\n  {a}: {ra[0]} {ra[1]}\n  {b}: {rb[0]} {rb[1]}")
    print(f"{len(corpus) - differ} of {len(corpus)} texts answered the same, {differ} differently")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
