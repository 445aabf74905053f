//! What VADER knows about single words, built once from the data files
//! vaderSentiment 3.3.2 ships (vader/data/, MIT, C.J. Hutto).
//!
//! The rules only ever ask a handful of questions of a word: its lexicon
//! valence, whether it is a booster or dampener, whether it negates, and
//! whether it is one of the few words a rule names ("no", "but", "least",
//! "never", the words of the special-case idioms...). Python asks each of them
//! with its own dictionary or list lookup on a freshly lowercased string; here
//! one hash lookup per word answers all of them at once ([`Entry`]), and the
//! rules then compare small [`Kw`] tags instead of strings.

use std::collections::HashMap;
use std::sync::LazyLock;

use foldhash::fast::FixedState;

use crate::python_str::py_strip;

/// The word-valence lexicon of vaderSentiment 3.3.2: `word<TAB>mean<TAB>sd<TAB>ratings`.
const LEXICON: &str = include_str!("../data/vader_lexicon.txt");

/// The emoji lexicon of vaderSentiment 3.3.2: `emoji<TAB>description`.
const EMOJI_LEXICON: &str = include_str!("../data/emoji_utf8_lexicon.txt");

/// A booster ("very") adds this to a word's valence magnitude.
pub(crate) const B_INCR: f64 = 0.293;
/// A dampener ("slightly") takes this from a word's valence magnitude.
pub(crate) const B_DECR: f64 = -0.293;

/// vaderSentiment's `BOOSTER_DICT`: single words only, since a token never
/// holds a space; its three two-word entries ("kind of", "sort of", "just
/// enough") are matched as [`Kw`] pairs by the idiom rule.
const BOOSTERS: [(&str, f64); 81] = [
    ("absolutely", B_INCR),
    ("amazingly", B_INCR),
    ("awfully", B_INCR),
    ("completely", B_INCR),
    ("considerable", B_INCR),
    ("considerably", B_INCR),
    ("decidedly", B_INCR),
    ("deeply", B_INCR),
    ("effing", B_INCR),
    ("enormous", B_INCR),
    ("enormously", B_INCR),
    ("entirely", B_INCR),
    ("especially", B_INCR),
    ("exceptional", B_INCR),
    ("exceptionally", B_INCR),
    ("extreme", B_INCR),
    ("extremely", B_INCR),
    ("fabulously", B_INCR),
    ("flipping", B_INCR),
    ("flippin", B_INCR),
    ("frackin", B_INCR),
    ("fracking", B_INCR),
    ("fricking", B_INCR),
    ("frickin", B_INCR),
    ("frigging", B_INCR),
    ("friggin", B_INCR),
    ("fully", B_INCR),
    ("fuckin", B_INCR),
    ("fucking", B_INCR),
    ("fuggin", B_INCR),
    ("fugging", B_INCR),
    ("greatly", B_INCR),
    ("hella", B_INCR),
    ("highly", B_INCR),
    ("hugely", B_INCR),
    ("incredible", B_INCR),
    ("incredibly", B_INCR),
    ("intensely", B_INCR),
    ("major", B_INCR),
    ("majorly", B_INCR),
    ("more", B_INCR),
    ("most", B_INCR),
    ("particularly", B_INCR),
    ("purely", B_INCR),
    ("quite", B_INCR),
    ("really", B_INCR),
    ("remarkably", B_INCR),
    ("so", B_INCR),
    ("substantially", B_INCR),
    ("thoroughly", B_INCR),
    ("total", B_INCR),
    ("totally", B_INCR),
    ("tremendous", B_INCR),
    ("tremendously", B_INCR),
    ("uber", B_INCR),
    ("unbelievably", B_INCR),
    ("unusually", B_INCR),
    ("utter", B_INCR),
    ("utterly", B_INCR),
    ("very", B_INCR),
    ("almost", B_DECR),
    ("barely", B_DECR),
    ("hardly", B_DECR),
    ("kinda", B_DECR),
    ("kindof", B_DECR),
    ("kind-of", B_DECR),
    ("less", B_DECR),
    ("little", B_DECR),
    ("marginal", B_DECR),
    ("marginally", B_DECR),
    ("occasional", B_DECR),
    ("occasionally", B_DECR),
    ("partly", B_DECR),
    ("scarce", B_DECR),
    ("scarcely", B_DECR),
    ("slight", B_DECR),
    ("slightly", B_DECR),
    ("somewhat", B_DECR),
    ("sorta", B_DECR),
    ("sortof", B_DECR),
    ("sort-of", B_DECR),
];

/// vaderSentiment's `NEGATE`; any word containing "n't" negates as well.
const NEGATE: [&str; 59] = [
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

/// The words some rule names, as tags: comparing tags replaces Python's
/// string comparisons of lowercased words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kw {
    /// No rule names this word.
    Other,
    No,
    Kind,
    Sort,
    Of,
    Just,
    Enough,
    But,
    Least,
    At,
    Very,
    Never,
    So,
    This,
    Without,
    Doubt,
    Or,
    Nor,
    The,
    Shit,
    Bomb,
    Bad,
    Ass,
    Bus,
    Stop,
    Yeah,
    Right,
    Kiss,
    Death,
    To,
    Die,
    For,
    Beating,
    Heart,
}

/// The lowercase spelling of every tag but [`Kw::Other`].
const KEYWORDS: [(&str, Kw); 33] = [
    ("no", Kw::No),
    ("kind", Kw::Kind),
    ("sort", Kw::Sort),
    ("of", Kw::Of),
    ("just", Kw::Just),
    ("enough", Kw::Enough),
    ("but", Kw::But),
    ("least", Kw::Least),
    ("at", Kw::At),
    ("very", Kw::Very),
    ("never", Kw::Never),
    ("so", Kw::So),
    ("this", Kw::This),
    ("without", Kw::Without),
    ("doubt", Kw::Doubt),
    ("or", Kw::Or),
    ("nor", Kw::Nor),
    ("the", Kw::The),
    ("shit", Kw::Shit),
    ("bomb", Kw::Bomb),
    ("bad", Kw::Bad),
    ("ass", Kw::Ass),
    ("bus", Kw::Bus),
    ("stop", Kw::Stop),
    ("yeah", Kw::Yeah),
    ("right", Kw::Right),
    ("kiss", Kw::Kiss),
    ("death", Kw::Death),
    ("to", Kw::To),
    ("die", Kw::Die),
    ("for", Kw::For),
    ("beating", Kw::Beating),
    ("heart", Kw::Heart),
];

/// Everything the rules ask of one lowercase word.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Entry {
    /// Its valence in the lexicon, if it is a lexicon word.
    pub lex: Option<f64>,
    /// Its booster (+0.293) or dampener (-0.293) value.
    pub booster: Option<f64>,
    /// It is in `NEGATE` (the "n't" test is made on the word itself).
    pub negation: bool,
    /// Which rule word it is.
    pub kw: Kw,
}

impl Entry {
    /// A word VADER knows nothing about.
    pub const UNKNOWN: Entry = Entry {
        lex: None,
        booster: None,
        negation: false,
        kw: Kw::Other,
    };
}

/// The parsed data: the word table and the emoji descriptions.
pub(crate) struct Lexicon {
    /// Lowercase word -> what the rules ask of it.
    words: HashMap<Box<str>, Entry, FixedState>,
    /// The longest key of `words`, in bytes: a longer word is unknown
    /// without lowercasing it.
    max_word_len: usize,
    /// Single-character emoji -> its description. Python substitutes per
    /// code point, so the lexicon's multi-code-point sequences (flags, skin
    /// tones, ZWJ sequences) can never match and are left out.
    emojis: HashMap<char, &'static str, FixedState>,
    /// Some emoji key is ASCII (none in 3.3.2): an ASCII text then needs the
    /// substitution scan too.
    ascii_emoji: bool,
}

static LEXICON_DATA: LazyLock<Lexicon> = LazyLock::new(Lexicon::parse);

/// The lexicon, parsed on first use.
pub(crate) fn lexicon() -> &'static Lexicon {
    &LEXICON_DATA
}

impl Lexicon {
    /// Parses the data as vaderSentiment's `make_lex_dict` and
    /// `make_emoji_dict` do: each line stripped of whitespace, split on
    /// tabs, the first two fields kept; a later line wins over an earlier one
    /// with the same key. (A line whose measure is not a number would make
    /// Python fail to load; none exists, and a unit test holds the count.)
    fn parse() -> Lexicon {
        let mut words: HashMap<Box<str>, Entry, FixedState> = HashMap::default();
        for line in LEXICON.trim_end_matches('\n').split('\n') {
            let mut fields = py_strip(line).split('\t');
            let (Some(word), Some(measure)) = (fields.next(), fields.next()) else {
                continue;
            };
            if let Ok(valence) = measure.parse::<f64>() {
                entry(&mut words, word).lex = Some(valence);
            }
        }
        for (word, value) in BOOSTERS {
            entry(&mut words, word).booster = Some(value);
        }
        for word in NEGATE {
            entry(&mut words, word).negation = true;
        }
        for (word, kw) in KEYWORDS {
            entry(&mut words, word).kw = kw;
        }
        let max_word_len = words.keys().map(|k| k.len()).max().unwrap_or(0);

        let mut emojis: HashMap<char, &'static str, FixedState> = HashMap::default();
        for line in EMOJI_LEXICON.trim_end_matches('\n').split('\n') {
            let mut fields = py_strip(line).split('\t');
            let (Some(emoji), Some(description)) = (fields.next(), fields.next()) else {
                continue;
            };
            let mut chars = emoji.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                emojis.insert(c, description);
            }
        }
        let ascii_emoji = emojis.keys().any(char::is_ascii);
        Lexicon {
            words,
            max_word_len,
            emojis,
            ascii_emoji,
        }
    }

    /// What the rules ask of `lower`, a lowercased word.
    pub fn get(&self, lower: &str) -> Entry {
        self.words.get(lower).copied().unwrap_or(Entry::UNKNOWN)
    }

    /// A word longer than this (in bytes, lowercased ASCII) is unknown.
    pub fn max_word_len(&self) -> usize {
        self.max_word_len
    }

    /// The description that replaces the character `c`, if it is an emoji.
    pub fn emoji(&self, c: char) -> Option<&'static str> {
        if c.is_ascii() && !self.ascii_emoji {
            return None;
        }
        self.emojis.get(&c).copied()
    }

    /// Some emoji is an ASCII character, so ASCII text needs the emoji scan.
    pub fn ascii_emoji(&self) -> bool {
        self.ascii_emoji
    }

    /// The number of lexicon words and of single-character emojis.
    #[cfg(test)]
    pub fn sizes(&self) -> (usize, usize) {
        (
            self.words.values().filter(|e| e.lex.is_some()).count(),
            self.emojis.len(),
        )
    }
}

fn entry<'a>(words: &'a mut HashMap<Box<str>, Entry, FixedState>, word: &str) -> &'a mut Entry {
    words.entry(word.into()).or_insert(Entry::UNKNOWN)
}

/// vaderSentiment's `SPECIAL_CASES` of two words.
pub(crate) fn special_case2(a: Kw, b: Kw) -> Option<f64> {
    match (a, b) {
        (Kw::The, Kw::Shit) | (Kw::The, Kw::Bomb) => Some(3.0),
        (Kw::Bad, Kw::Ass) => Some(1.5),
        (Kw::Bus, Kw::Stop) => Some(0.0),
        (Kw::Yeah, Kw::Right) => Some(-2.0),
        (Kw::Beating, Kw::Heart) => Some(3.5),
        _ => None,
    }
}

/// vaderSentiment's `SPECIAL_CASES` of three words ("badass", its one
/// single-word case, can never equal a joined sequence of words).
pub(crate) fn special_case3(a: Kw, b: Kw, c: Kw) -> Option<f64> {
    match (a, b, c) {
        (Kw::Kiss, Kw::Of, Kw::Death) => Some(-1.5),
        (Kw::To, Kw::Die, Kw::For) => Some(3.0),
        _ => None,
    }
}

/// The two-word entries of `BOOSTER_DICT`, all dampeners.
pub(crate) fn booster2(a: Kw, b: Kw) -> Option<f64> {
    match (a, b) {
        (Kw::Kind, Kw::Of) | (Kw::Sort, Kw::Of) | (Kw::Just, Kw::Enough) => Some(B_DECR),
        _ => None,
    }
}
