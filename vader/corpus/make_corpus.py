#!/usr/bin/env python3
"""Writes vader/corpus/sentences.txt: the sentences tests/it/vader.rs scores
with both Python's vaderSentiment 3.3.2 and tiffin_vader.

Deterministic (seeded, no network): hand-written sentences for each VADER
rule, then sentences built from templates with words drawn from the
lexicons in vader/data/ (the files vaderSentiment ships), so that every
rule meets many words, in many combinations, casings and punctuations.

One sentence per line, split on "\\n" only (a line may hold other Python
whitespace: tabs, U+001C..U+001F, U+00A0, U+2028...); an empty line is the
empty sentence. Run from anywhere: python3 vader/corpus/make_corpus.py
"""

import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
SEED = 28

# Hand-written: each rule of vaderSentiment.py, and its quirks.
HAND = [
    # empty, blank and punctuation-only
    "", " ", "\t", "!", "?", "!!!", "???", "....", ":)", ":(", ":-D", "!?!?", "-", "—", "...!",
    # plain lexicon words
    "The book was good.", "The book was bad.", "I love it.", "I hate it.", "good", "bad",
    "It is a table.", "VADER is smart, handsome, and funny.", "VADER is smart, handsome, and funny!",
    # boosters and dampeners, at distance 1, 2, 3
    "VADER is very smart, handsome, and funny.", "It is very good.", "It is very very good.",
    "It is extremely bad.", "It was really quite good.", "It was slightly good.",
    "It was barely bad.", "It is somewhat good.", "Very much good.", "Very, much, so good.",
    "It is kinda good.", "It is sorta bad.", "It is kind-of good.", "It is sortof bad.",
    "The book was only kind of good.", "It was sort of bad.", "It was just enough good.",
    "It was kind of a good thing.", "kind of", "kind", "It is kind.", "so", "very",
    # ALL CAPS emphasis (only when some but not all words are in capitals)
    "VADER is VERY SMART, handsome, and FUNNY.", "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!", "Today SUX!", "GREAT",
    "GREAT JOB", "IT IS GREAT", "It is GREAT", "It is VERY good", "It is very GOOD",
    "It is NOT good", "NO good", "NO GOOD here", "I said NO.", "It is KINDA bad",
    "I AM HAPPY", "I am HAPPY", "It is SLIGHTLY bad", "A1 is GOOD",
    # negation
    "VADER is not smart, handsome, nor funny.", "It is not good.", "It isn't good.",
    "It is not very good.", "It is not really very good.", "It wasn't bad at all.",
    "Not bad at all", "Never good.", "I don't love it", "I dont love it", "I DON'T love it",
    "Nothing good happened.", "It is not not good.", "aint bad", "It was without good.",
    "Rarely good.", "Seldom bad.", "Despite good reviews it failed.", "uh-uh good", "uhuh good",
    # never so / never this, and "so"/"this" alone three words back
    "Sentiment analysis has never been good.", "Sentiment analysis has never been this good!",
    "It has never been so good.", "Never so good.", "Never this bad.", "It is this good.",
    "We are so good.", "I was never this happy", "never so happy", "never this happy",
    # without doubt
    "Without a doubt, excellent idea.", "Without a doubt, an excellent idea.",
    "without doubt good", "Without doubt, bad.",
    # "no"
    "No problems so far.", "No problems.", "No.", "no", "no no", "No good.", "No, good.",
    "no bad or good", "There is no good or bad here.", "no way good", "No love nor hate",
    "no no no good", "I have no complaints.", "No, it was great.", "Nope, not good.",
    # "least"
    "Roger Dodger is one of the least compelling variations on this theme.",
    "Roger Dodger is at least compelling as a variation on the theme.",
    "At least it isn't a horrible book.", "least good", "The very least good thing.",
    "It is the least bad option.", "At least good.", "Least bad.",
    # "but": the later clause dominates; equal valences hit Python's list.index
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today only kinda sux! But I'll get by, lol", "good but bad", "bad but good",
    "good good but good good", "It was good but not great.", "but", "But good.",
    "good but good but bad", "I love it but I hate it but I love it", "nice, but nice, but",
    "good bad but bad good", "happy happy happy but sad sad sad",
    # idioms and special cases
    "With VADER, sentiment analysis is the shit!", "Most automated sentiment analysis tools are shit.",
    "On the other hand, VADER is quite bad ass", "VADER is such a badass!",
    "Not such a badass after all.", "The party was the bomb.", "Yeah right, that was great.",
    "It was a kiss of death for the team.", "The cake is to die for.",
    "I felt a beating heart in the crowd.", "We wait at the bus stop.", "it is the shit",
    "really the shit now", "yeah right", "they said yeah right good", "kiss of death",
    "it was kind of the bomb", "sort of to die for", "that was just enough good",
    "That cut the mustard.", "He is under the weather.", "We are in the red.",
    # punctuation emphasis
    "Good!", "Good!!", "Good!!!", "Good!!!!", "Good!!!!!!!", "Bad!!!", "Good?", "Good??",
    "Good???", "Good????", "Good?????", "Bad???", "Really?!", "Is it good?!?!", "Table!!!",
    # emoji and emoticons
    "Catch utf-8 emoji such as 💘 and 💋 and 😁", "Make sure you :) or :D today!",
    "😁", "😁😁", "😁!", "I am happy😁", "😁happy", "Good 👍", "👎 bad", "🇺🇸 flag",
    "No 😁", "Not 😍", "I love it 😍😍😍", "💔", "😂😂", "☹ today", "©", "® mark",
    "Crying 😢 but happy 😀", "This is 😡!!!", ":-)", ":-(", ";)", "<3", "</3", ":')", "xD",
    # mixed case and casing quirks
    "GOOD morning", "Good Morning", "gOoD", "I LOVE you", "i love YOU", "LOL", "lol", "Lol",
    "OK.", "ok", "ok.", "Ok!", "FAV", "fav", "XD", ":P", ":p",
    # non-ASCII: accents, other scripts, Unicode casing
    "Café is good.", "naïve but nice", "Ich bin überrascht", "Это хорошо good",
    "私は幸せです", "Γειά σου ΚΌΣΜΕ good", "ΣΟΦΟΣ bad", "İstanbul is GREAT", "ǅemal is good", "ǅEMAL is good", "GOOD ǅEMAL", "ᾈ GOOD day",
    "The KELVIN \u212ainD of good", "\u212aind of good", "ﬁne good", "good\u00a0bad",
    "good\u2003very good", "good\u3000great", "\u00e9\u00e9! nice", "straße good",
    # Python whitespace that Rust's char::is_whitespace does not count
    "good\x1cbad", "very\x1dgood", "not\x1egood", "\x1fgood\x1f", "good\x85great",
    "no\u2028good", "good\u2029bad", "good\x0bbad", "good\x0cbad", "tab\tgood",
]

NEGATE = ["aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt",
          "ain't", "aren't", "can't", "couldn't", "daren't", "didn't", "doesn't",
          "dont", "hadnt", "hasnt", "havent", "isnt", "mightnt", "mustnt", "neither",
          "don't", "hadn't", "hasn't", "haven't", "isn't", "mightn't", "mustn't",
          "neednt", "needn't", "never", "none", "nope", "nor", "not", "nothing", "nowhere",
          "oughtnt", "shant", "shouldnt", "uhuh", "wasnt", "werent",
          "oughtn't", "shan't", "shouldn't", "uh-uh", "wasn't", "weren't",
          "without", "wont", "wouldnt", "won't", "wouldn't", "rarely", "seldom", "despite"]
BOOSTERS = ["absolutely", "amazingly", "awfully", "completely", "considerably", "deeply",
            "effing", "enormously", "entirely", "especially", "exceptionally", "extremely",
            "fabulously", "flipping", "frickin", "fully", "fucking", "greatly", "hella",
            "highly", "hugely", "incredibly", "intensely", "major", "more", "most",
            "particularly", "purely", "quite", "really", "remarkably", "so", "substantially",
            "thoroughly", "totally", "tremendously", "uber", "unbelievably", "unusually",
            "utterly", "very"]
DAMPENERS = ["almost", "barely", "hardly", "kinda", "kindof", "kind-of", "less", "little",
             "marginally", "occasionally", "partly", "scarcely", "slightly", "somewhat",
             "sorta", "sortof", "sort-of"]
PHRASES = ["kind of", "sort of", "just enough", "at least", "the least", "very least",
           "never so", "never this", "without doubt", "without a doubt", "no", "no way",
           "the shit", "the bomb", "bad ass", "yeah right", "kiss of death", "to die for",
           "beating heart", "bus stop", "so", "this", "but", "or", "nor", "least", "not"]
FILLER = ["the", "a", "it", "is", "was", "I", "we", "they", "movie", "food", "service",
          "and", "of", "to", "this", "that", "with", "my", "phone", "day", "battery", "just"]
SUBJECTS = ["The movie", "This product", "The service", "My day", "The food", "It", "She",
            "The battery", "Their support", "This book"]
ENDINGS = ["", ".", "!", "!!", "!!!", "!!!!!!", "?", "??", "???", "?????", "?!", "...", " :)",
           " :(", ",", ";"]
SPACES = [" "] * 30 + ["  ", "\t", "\u00a0", "\x1c", "\x1f", "\u2003", "\u3000", "\x85"]


def load():
    """The lexicon words and the emoji keys, read as vaderSentiment reads them."""
    with open(os.path.join(DATA, "vader_lexicon.txt"), encoding="utf-8") as f:
        lex = []
        for line in f.read().rstrip("\n").split("\n"):
            if line:
                word, measure = line.strip().split("\t")[0:2]
                lex.append((word, float(measure)))
    with open(os.path.join(DATA, "emoji_utf8_lexicon.txt"), encoding="utf-8") as f:
        emojis = [line.strip().split("\t")[0] for line in f.read().rstrip("\n").split("\n")]
    return lex, emojis


def case(rng, word):
    """A word as written: usually as is, sometimes Capitalized or ALL CAPS."""
    r = rng.random()
    if r < 0.12:
        return word.upper()
    if r < 0.22:
        return word.capitalize()
    return word


def join(rng, words):
    out = words[0]
    for w in words[1:]:
        out += rng.choice(SPACES) + w
    return out


def main():
    rng = random.Random(SEED)
    lex, emojis = load()
    words = [w for w, _ in lex]
    strong = [w for w, v in lex if abs(v) >= 1.5 and w.isalpha()]
    single_emoji = [e for e in emojis if len(e) == 1]
    out = list(HAND)

    # Every rule word before every kind of lexicon word, with every ending.
    for phrase in NEGATE + BOOSTERS + DAMPENERS + PHRASES:
        for _ in range(8):
            subject = rng.choice(SUBJECTS)
            target = case(rng, rng.choice(strong))
            middle = rng.choice(["", "", "is ", "was ", "really ", "not ", "very "])
            out.append(f"{subject} {middle}{case(rng, phrase)} {target}{rng.choice(ENDINGS)}")

    # Each "but" clause pair, with repeated valences to exercise list.index.
    for _ in range(300):
        a = [case(rng, rng.choice(strong + FILLER)) for _ in range(rng.randint(1, 5))]
        b = [case(rng, rng.choice(strong + FILLER)) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.4:
            a += a[: rng.randint(1, len(a))]
        but = rng.choice(["but", "But", "BUT", "but,"])
        out.append(join(rng, a + [but] + b) + rng.choice(ENDINGS))

    # Emoji: single characters from the emoji lexicon, alone, in text, glued.
    for _ in range(400):
        e = rng.choice(single_emoji)
        w = rng.choice(strong)
        form = rng.randrange(6)
        if form == 0:
            out.append(e)
        elif form == 1:
            out.append(f"{rng.choice(SUBJECTS)} is {w} {e}{rng.choice(ENDINGS)}")
        elif form == 2:
            out.append(f"{w}{e}{rng.choice(strong)}")
        elif form == 3:
            out.append(f"{e}{e}{rng.choice(single_emoji)} {rng.choice(NEGATE)} {w}")
        elif form == 4:
            out.append(f"not {e} {w}!")
        else:
            out.append(f"{rng.choice(emojis)} {w} {rng.choice(emojis)}")

    # Free mixtures: lexicon words (any, including emoticons), rule words,
    # fillers, in random casings, spacings and endings.
    pools = [words, words, strong, NEGATE, BOOSTERS, DAMPENERS, PHRASES, FILLER, FILLER,
             single_emoji]
    while len(out) < 6000:
        n = rng.randint(1, 14)
        ws = [case(rng, rng.choice(rng.choice(pools))) for _ in range(n)]
        if rng.random() < 0.15:
            ws = [w.upper() for w in ws]
        punct = rng.choice(["", ",", ".", "!", "?", ":", ";", "'", '"', "(", ")", "..."])
        if punct and rng.random() < 0.3:
            i = rng.randrange(len(ws))
            ws[i] = (punct + ws[i]) if rng.random() < 0.5 else (ws[i] + punct)
        out.append(join(rng, ws) + rng.choice(ENDINGS))

    assert not any("\n" in s for s in out)
    with open(os.path.join(HERE, "sentences.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(s + "\n" for s in out))


if __name__ == "__main__":
    main()
