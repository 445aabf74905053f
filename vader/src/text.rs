//! Python's string primitives as vaderSentiment uses them, on borrowed
//! slices: `str.split()` and `str.strip()` (Python's whitespace),
//! `str.strip(string.punctuation)`, `str.isupper()`, `str.lower()`, and the
//! emoji-to-description substitution.
//!
//! Each reproduces Python's definition where it differs from Rust's: Python's
//! whitespace also holds U+001C..U+001F; `isupper` fails on a titlecase
//! letter ("ǅ"); `len` counts code points. Unicode tables are Rust's (Python
//! 3.11 has Unicode 14): a character newer than that may be cased differently.

use std::borrow::Cow;

use crate::lexicon::{Entry, Lexicon};
use crate::python_str::is_py_space;

/// vaderSentiment's `_strip_punc_if_word`: a token loses its leading and
/// trailing ASCII punctuation (`string.punctuation` is exactly Rust's
/// `is_ascii_punctuation`), unless two code points or fewer would remain,
/// when it is kept whole (an emoticon such as ":)" or ":D", but also "ok.").
pub(crate) fn strip_punc_if_word(token: &str) -> &str {
    let stripped = token.trim_matches(|c: char| c.is_ascii_punctuation());
    let short = match stripped.len() {
        0..=2 => true,
        // A code point is at most four bytes.
        3..=8 => stripped.chars().count() <= 2,
        _ => false,
    };
    if short { token } else { stripped }
}

/// The words of a text as vaderSentiment's `SentiText` makes them: split on
/// whitespace, each stripped of punctuation.
pub(crate) fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_py_space)
        .filter(|w| !w.is_empty())
        .map(strip_punc_if_word)
}

/// The titlecase letters (general category Lt): Python's `isupper` is false
/// for a word holding one.
fn is_titlecase(c: char) -> bool {
    matches!(c,
        '\u{1c5}' | '\u{1c8}' | '\u{1cb}' | '\u{1f2}'
        | '\u{1f88}'..='\u{1f8f}' | '\u{1f98}'..='\u{1f9f}' | '\u{1fa8}'..='\u{1faf}'
        | '\u{1fbc}' | '\u{1fcc}' | '\u{1ffc}')
}

/// Python's `str.isupper()`: at least one cased character, and every cased
/// character uppercase ("I", "WOW!" and "A1" are; "1", ":)" and "Ok" are not).
pub(crate) fn is_upper(word: &str) -> bool {
    if word.is_ascii() {
        let b = word.as_bytes();
        return b.iter().any(u8::is_ascii_uppercase) && !b.iter().any(u8::is_ascii_lowercase);
    }
    let mut cased = false;
    for c in word.chars() {
        if c.is_lowercase() || is_titlecase(c) {
            return false;
        }
        cased |= c.is_uppercase();
    }
    cased
}

/// vaderSentiment's emoji substitution: every character of the emoji
/// lexicon becomes its description, after a space unless one precedes it;
/// nothing is put after it, so "😁!" ends in "eyes!". Borrowed when the
/// text holds no emoji, as almost every text does.
pub(crate) fn substitute_emojis<'t>(lexicon: &Lexicon, text: &'t str) -> Cow<'t, str> {
    if text.is_ascii() && !lexicon.ascii_emoji() {
        return Cow::Borrowed(text);
    }
    let Some(first) = text
        .char_indices()
        .find(|&(_, c)| lexicon.emoji(c).is_some())
    else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 64);
    out.push_str(&text[..first.0]);
    let mut prev_space = text[..first.0].ends_with(' ') || first.0 == 0;
    for c in text[first.0..].chars() {
        if let Some(description) = lexicon.emoji(c) {
            if !prev_space {
                out.push(' ');
            }
            out.push_str(description);
            prev_space = false;
        } else {
            out.push(c);
            prev_space = c == ' ';
        }
    }
    Cow::Owned(out)
}

/// One word of the text with everything the rules ask of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Token {
    /// The lexicon's answer for the lowercased word.
    pub entry: Entry,
    /// The lowercased word is a negation: in `NEGATE`, or holds "n't".
    pub negated: bool,
    /// The word as written is ALL CAPS (`isupper`).
    pub upper: bool,
}

impl Token {
    /// Looks `word` up lowercased: in a stack buffer when it is ASCII (the
    /// usual case), with Python's full Unicode lowercasing otherwise.
    pub fn new(lexicon: &Lexicon, word: &str) -> Token {
        let upper = is_upper(word);
        let (entry, has_nt) = if word.is_ascii() {
            let bytes = word.as_bytes();
            let has_nt = bytes.windows(3).any(|w| w.eq_ignore_ascii_case(b"n't"));
            let mut buf = [0u8; 64];
            let entry = match buf.get_mut(..bytes.len()) {
                Some(lower) if bytes.len() <= lexicon.max_word_len() => {
                    for (l, b) in lower.iter_mut().zip(bytes) {
                        *l = b.to_ascii_lowercase();
                    }
                    // ASCII lowercased is still ASCII, hence UTF-8.
                    std::str::from_utf8(lower).map_or(Entry::UNKNOWN, |l| lexicon.get(l))
                }
                _ => Entry::UNKNOWN,
            };
            (entry, has_nt)
        } else {
            let lower = word.to_lowercase();
            (lexicon.get(&lower), lower.contains("n't"))
        };
        Token {
            entry,
            negated: entry.negation || has_nt,
            upper,
        }
    }
}
