//! VADER sentiment scores, identical to Python's `vaderSentiment` 3.3.2
//! `SentimentIntensityAnalyzer().polarity_scores(text)`, at native speed.
//!
//! VADER (Hutto & Gilbert, ICWSM 2014) scores a sentence with a lexicon of
//! ~7,500 words, emoticons and slang, each rated from -4 (most negative) to
//! +4 (most positive) by human raters, and a few grammar rules. A call:
//!
//! 1. **Emoji.** Each emoji character becomes its description ("😁" →
//!    "beaming face with smiling eyes"), whose words are then scored.
//! 2. **Words.** The text is split on whitespace; each token loses leading
//!    and trailing punctuation unless at most two characters would remain
//!    (so ":)" and ":D" survive as emoticons).
//! 3. **Valence per word.** A lexicon word (looked up lowercased) starts at
//!    its rating; then
//!    - *ALL CAPS*: when some words but not all are in capitals, a word in
//!      capitals gains 0.733 in magnitude ("GREAT");
//!    - *boosters and dampeners* up to three words before it add or take
//!      0.293 in the direction of its valence ("very good", "slightly
//!      good"), scaled by 1, 0.95, 0.9 with distance, more in capitals;
//!    - *negation*: a negating word ("not", "never", any word with "n't",
//!      "without"...) up to three words before it multiplies it by -0.74;
//!      "never so good" / "never this good" multiply by 1.25 instead, and
//!      "without doubt" does nothing;
//!    - *"no"* before a lexicon word scores 0 itself and negates the
//!      next one or two words (three across "or"/"nor");
//!    - *"least"* before a word negates it, but not in "at least" or "very
//!      least";
//!    - *idioms*: a few phrases set the valence outright ("the shit" 3,
//!      "yeah right" -2, "kiss of death" -1.5), and "kind of", "sort of",
//!      "just enough" before a word dampen it.
//!
//!    Boosters, "kind" before "of", and words outside the lexicon count 0.
//! 4. **"But".** Valences before the first "but" are halved, those after it
//!    multiplied by 1.5: the clause after "but" dominates.
//! 5. **Scores.** `compound` is the sum of valences, pushed away from zero by
//!    up to four "!" (0.292 each) and two or more "?" (0.18 each, at most
//!    0.96), normalized as `x / sqrt(x² + 15)` into (-1, 1). `pos`, `neg`
//!    and `neu` are the shares of the sentence's positive words (each weighs
//!    1 + its valence), negative words (1 + |valence|) and neutral words (1),
//!    the punctuation emphasis added to the dominant side. Python rounds them
//!    to 3 decimals and `compound` to 4; so does this crate.
//!
//! **Identical, quirks included.** The reference is the Python code, not the
//! paper: the "but" rule's rewrite of the valence list with `list.index`
//! hits the first of equal valences, "so"/"this" right before a word
//! intensifies it even without "never", "ok." keeps its period (stripping it
//! would leave two characters) and so is not the lexicon's "ok". Each such
//! behaviour is reproduced and named where it happens; `tests/it/vader.rs`
//! runs Python's analyzer on a corpus of over 5,000 sentences
//! (vader/corpus/) and requires the same four numbers for every one.
//!
//! **Fast.** The lexicon files (vader/data/, MIT, from the Python package)
//! are compiled in and parsed once into one hash map whose entry answers
//! every question a rule asks of a word. A call borrows the words from the
//! text, lowercases ASCII words into a stack buffer for the one lookup per
//! word, and returns a `Copy` [`Scores`]; it allocates two small vectors,
//! plus a string only for a text holding an emoji and for each non-ASCII
//! word (lowercased with Unicode's full case mapping, as Python does).

mod lexicon;
mod python_str;
mod rules;
mod score;
mod text;

#[cfg(test)]
mod tests;

/// VADER's four scores of a text, rounded as Python's `polarity_scores`
/// rounds them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    /// Share of negative sentiment, 0..=1, 3 decimals.
    pub neg: f64,
    /// Share of neutral words, 0..=1, 3 decimals.
    pub neu: f64,
    /// Share of positive sentiment, 0..=1, 3 decimals.
    pub pos: f64,
    /// Normalized overall valence, -1..=1, 4 decimals: above 0 is positive.
    pub compound: f64,
}

/// Scores `text` as vaderSentiment 3.3.2's
/// `SentimentIntensityAnalyzer().polarity_scores(text)` does: VADER is
/// meant for one sentence at a time (split a paragraph first).
///
/// ```
/// let s = tiffin_vader::polarity_scores("VADER is smart, handsome, and funny!");
/// assert_eq!((s.neg, s.neu, s.pos, s.compound), (0.0, 0.248, 0.752, 0.8439));
/// ```
pub fn polarity_scores(text: &str) -> Scores {
    let lexicon = lexicon::lexicon();
    let text = text::substitute_emojis(lexicon, text);
    let tokens: Vec<text::Token> = text::words(&text)
        .map(|w| text::Token::new(lexicon, w))
        .collect();
    let mut sentiments = Vec::with_capacity(tokens.len());
    rules::valences(&tokens, &mut sentiments);
    rules::but(&tokens, &mut sentiments);
    score::scores(&sentiments, &text)
}

/// Parses the compiled-in lexicons now; they are otherwise parsed on the
/// first call (a few milliseconds). A server calls it when its model loads.
pub fn load() {
    lexicon::lexicon();
}

/// The compound score of `text` alone (see [`polarity_scores`]).
pub fn compound(text: &str) -> f64 {
    polarity_scores(text).compound
}
