//! One test per rule, each with the scores Python's vaderSentiment 3.3.2
//! gives (`SentimentIntensityAnalyzer().polarity_scores`, values as `repr`
//! prints them). tests/it/vader.rs compares the whole corpus against Python
//! itself.

use super::*;
use crate::lexicon::lexicon;
use crate::score::py_round;
use crate::text::{is_upper, strip_punc_if_word, words};

/// (neg, neu, pos, compound) of `text`.
fn s(text: &str) -> (f64, f64, f64, f64) {
    let s = polarity_scores(text);
    (s.neg, s.neu, s.pos, s.compound)
}

#[test]
fn the_lexicons_parse_as_python_loads_them() {
    // len(lexicon) and the single-code-point keys of the emoji dict.
    assert_eq!(lexicon().sizes(), (7506, 1212));
    assert!(lexicon().max_word_len() <= 64);
    assert_eq!(
        lexicon().emoji('😁'),
        Some("beaming face with smiling eyes")
    );
}

#[test]
fn a_lexicon_word_scores_its_valence() {
    assert_eq!(s("The book was good."), (0.0, 0.508, 0.492, 0.4404));
    assert_eq!(
        s("I love this product, it works great! The battery could be better."),
        (0.0, 0.439, 0.561, 0.9098)
    );
}

#[test]
fn boosters_and_dampeners_move_the_next_words() {
    assert_eq!(s("It is very good."), (0.0, 0.484, 0.516, 0.4927));
    assert_eq!(s("It is slightly good."), (0.0, 0.535, 0.465, 0.3832));
}

#[test]
fn all_caps_emphasise_only_when_the_text_is_not_all_caps() {
    assert_eq!(s("It is GREAT"), (0.0, 0.293, 0.707, 0.7034));
    assert_eq!(s("IT IS GREAT"), (0.0, 0.328, 0.672, 0.6249));
    // A titlecase letter is not upper case for Python.
    assert_eq!(s("ǅemal is GOOD"), (0.0, 0.355, 0.645, 0.5622));
    assert!(is_upper("I") && is_upper("A1") && is_upper("ÉTÉ"));
    assert!(!is_upper("Ok") && !is_upper(":)") && !is_upper("1") && !is_upper("ǅ"));
}

#[test]
fn negations_flip_and_shrink_the_valence() {
    assert_eq!(s("It is not good."), (0.445, 0.555, 0.0, -0.3412));
    assert_eq!(s("It isn't good."), (0.546, 0.454, 0.0, -0.3412));
}

#[test]
fn never_so_and_this_intensify_and_this_alone_does_too() {
    assert_eq!(s("Never so good."), (0.0, 0.348, 0.652, 0.5777));
    assert_eq!(
        s("It has never been this good."),
        (0.0, 0.597, 0.403, 0.5228)
    );
    // Python's `and`/`or` precedence: "this" right before the word, three
    // words in, intensifies without "never".
    assert_eq!(s("It is this good."), (0.0, 0.471, 0.529, 0.5228));
}

#[test]
fn without_doubt_does_not_negate() {
    assert_eq!(s("without doubt good"), (0.0, 0.166, 0.834, 0.6136));
}

#[test]
fn no_negates_the_lexicon_words_after_it() {
    assert_eq!(s("No problems so far."), (0.0, 0.571, 0.429, 0.3089));
    assert_eq!(s("no no good"), (0.454, 0.189, 0.357, -0.1326));
    assert_eq!(s("no bad or good"), (0.332, 0.276, 0.393, 0.1139));
}

#[test]
fn least_negates_except_after_at_or_very() {
    assert_eq!(s("least good"), (0.706, 0.294, 0.0, -0.3412));
    assert_eq!(s("at least good"), (0.0, 0.408, 0.592, 0.4404));
    assert_eq!(s("The very least good thing."), (0.0, 0.557, 0.443, 0.4902));
}

#[test]
fn but_halves_before_and_raises_after() {
    assert_eq!(s("good but bad"), (0.617, 0.13, 0.253, -0.5859));
    // Equal valences: Python's list.index rewrites the first one twice.
    assert_eq!(s("good good but good good"), (0.0, 0.079, 0.921, 0.891));
}

#[test]
fn special_cases_and_kind_of_apply_only_as_python_finds_them() {
    assert_eq!(s("the party was the bomb"), (0.36, 0.337, 0.303, -0.128));
    assert_eq!(s("Yeah right, that was great."), (0.0, 0.323, 0.677, 0.743));
    assert_eq!(s("It was kind of good"), (0.0, 0.605, 0.395, 0.3832));
    assert_eq!(s("It was sort of good"), (0.0, 0.605, 0.395, 0.3832));
    assert_eq!(s("kind of"), (0.0, 1.0, 0.0, 0.0));
    // The Kelvin sign lowercases to an ASCII k.
    assert_eq!(s("\u{212a}ind of good"), (0.0, 0.408, 0.592, 0.4404));
}

#[test]
fn exclamation_and_question_marks_add_emphasis() {
    assert_eq!(s("Good!"), (0.0, 0.0, 1.0, 0.4926));
    assert_eq!(s("Good!!!!!!"), (0.0, 0.0, 1.0, 0.6209));
    assert_eq!(s("Good?"), (0.0, 0.0, 1.0, 0.4404));
    assert_eq!(s("Good??"), (0.0, 0.0, 1.0, 0.504));
    assert_eq!(s("Good????"), (0.0, 0.0, 1.0, 0.594));
}

#[test]
fn emojis_are_scored_by_their_description() {
    assert_eq!(s("😁"), (0.0, 0.571, 0.429, 0.4588));
    assert_eq!(s("I am happy😁"), (0.0, 0.472, 0.528, 0.7717));
    assert_eq!(
        s("Make sure you :) or :D today!"),
        (0.0, 0.294, 0.706, 0.8633)
    );
}

#[test]
fn punctuation_is_stripped_unless_two_characters_would_remain() {
    assert_eq!(strip_punc_if_word("good!"), "good");
    assert_eq!(strip_punc_if_word(":)"), ":)");
    assert_eq!(strip_punc_if_word("ok."), "ok.");
    assert_eq!(strip_punc_if_word("éé!"), "éé!");
    assert_eq!(s("ok"), (0.0, 0.0, 1.0, 0.296));
    assert_eq!(s("ok."), (0.0, 1.0, 0.0, 0.0));
    assert_eq!(s("I said NO."), (0.0, 1.0, 0.0, 0.0));
}

#[test]
fn empty_and_punctuation_only_texts() {
    assert_eq!(s(""), (0.0, 0.0, 0.0, 0.0));
    assert_eq!(s("   "), (0.0, 0.0, 0.0, 0.0));
    assert_eq!(s("!!!"), (0.0, 1.0, 0.0, 0.0));
}

#[test]
fn pythons_whitespace_splits_words() {
    assert_eq!(
        words("a\u{1c}b\u{a0}c\u{3000}d\te").collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(s("good\u{1c}bad"), (0.547, 0.0, 0.453, -0.1531));
}

#[test]
fn rounding_is_pythons() {
    // Exact binary ties round to even, as Python's round does...
    assert_eq!(py_round(0.0625, 1e3), 0.062);
    assert_eq!(py_round(0.1875, 1e3), 0.188);
    // ...while 2.675 is below its decimal spelling and rounds down.
    assert_eq!(py_round(2.675, 1e2), 2.67);
    assert_eq!(py_round(-0.00001, 1e4).to_bits(), (-0.0f64).to_bits());
    assert_eq!(py_round(0.57735, 1e4), 0.5774);
}
