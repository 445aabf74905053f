//! The word rules: each word's valence, adjusted by its neighbours, then the
//! "but" rule over the whole sentence.
//!
//! The order of operations and every quirk follow vaderSentiment 3.3.2's
//! `polarity_scores`, `sentiment_valence`, `_negation_check`,
//! `_special_idioms_check`, `_least_check` and `_but_check`, since the
//! scores must be identical to the last bit, not merely close.

use crate::lexicon::{Kw, booster2, special_case2, special_case3};
use crate::text::Token;

/// ALL-CAPS emphasis of a word, when the text is not all in capitals.
const C_INCR: f64 = 0.733;
/// A negated valence is multiplied by this.
pub(crate) const N_SCALAR: f64 = -0.74;

/// One valence per word, as `polarity_scores` lists them before the "but"
/// rule: 0 for a booster, for "kind" before "of", and for a word outside
/// the lexicon.
pub(crate) fn valences(tokens: &[Token], out: &mut Vec<f64>) {
    let uppers = tokens.iter().filter(|t| t.upper).count();
    // allcap_differential: some words, but not all, are ALL CAPS.
    let cap_diff = uppers > 0 && uppers < tokens.len();
    for i in 0..tokens.len() {
        let t = &tokens[i];
        let modifier = t.entry.booster.is_some()
            || (t.entry.kw == Kw::Kind && tokens.get(i + 1).is_some_and(|n| n.entry.kw == Kw::Of));
        out.push(if modifier {
            0.0
        } else {
            valence(tokens, i, cap_diff)
        });
    }
}

/// `sentiment_valence`: the valence of the lexicon word at `i`.
fn valence(tokens: &[Token], i: usize, cap_diff: bool) -> f64 {
    let Some(base) = tokens[i].entry.lex else {
        return 0.0;
    };
    let kw = |j: usize| tokens[j].entry.kw;
    let in_lex = |j: usize| tokens[j].entry.lex.is_some();
    let mut v = base;
    // "no" before a lexicon word negates it rather than scoring itself...
    if kw(i) == Kw::No && i + 1 < tokens.len() && in_lex(i + 1) {
        v = 0.0;
    }
    // ...and negates a lexicon word one or two words on, or three words on
    // across "or"/"nor" ("no good or bad"). This replaces the valence, so
    // "no" right after "no" scores as a negated "no".
    if (i > 0 && kw(i - 1) == Kw::No)
        || (i > 1 && kw(i - 2) == Kw::No)
        || (i > 2 && kw(i - 3) == Kw::No && matches!(kw(i - 1), Kw::Or | Kw::Nor))
    {
        v = base * N_SCALAR;
    }
    if tokens[i].upper && cap_diff {
        // Python's `else` also takes a valence of 0 ("NO" before a word) down.
        if v > 0.0 {
            v += C_INCR;
        } else {
            v -= C_INCR;
        }
    }
    // The three words before, nearest first; a lexicon word among them is
    // skipped (neither boosting nor negating), and the idiom rule runs only
    // when the third one back is not a lexicon word.
    for back in 0..3 {
        if i <= back || in_lex(i - back - 1) {
            continue;
        }
        let mut s = scalar(&tokens[i - back - 1], v, cap_diff);
        if back == 1 && s != 0.0 {
            s *= 0.95;
        }
        if back == 2 && s != 0.0 {
            s *= 0.9;
        }
        v += s;
        v = negation(v, tokens, back, i);
        if back == 2 {
            v = idioms(v, tokens, i);
        }
    }
    least(v, tokens, i)
}

/// `scalar_inc_dec`: what a booster or dampener before a word adds, in the
/// direction of the word's valence so far, with ALL-CAPS emphasis.
fn scalar(word: &Token, valence: f64, cap_diff: bool) -> f64 {
    let Some(mut s) = word.entry.booster else {
        return 0.0;
    };
    if valence < 0.0 {
        s = -s;
    }
    if word.upper && cap_diff {
        if valence > 0.0 {
            s += C_INCR;
        } else {
            s -= C_INCR;
        }
    }
    s
}

/// `_negation_check` for the word `back + 1` places before `i`.
fn negation(v: f64, tokens: &[Token], back: usize, i: usize) -> f64 {
    let kw = |j: usize| tokens[j].entry.kw;
    let so_this = |j: usize| matches!(kw(j), Kw::So | Kw::This);
    let negated = tokens[i - back - 1].negated;
    match back {
        0 if negated => v * N_SCALAR,
        // "never so good" / "never this good" intensify instead of negating;
        // "without doubt good" is neither.
        1 if kw(i - 2) == Kw::Never && so_this(i - 1) => v * 1.25,
        1 if kw(i - 2) == Kw::Without && kw(i - 1) == Kw::Doubt => v,
        1 if negated => v * N_SCALAR,
        // Python's precedence makes "so"/"this" right before the word
        // intensify here on its own, with or without "never".
        2 if (kw(i - 3) == Kw::Never && so_this(i - 2)) || so_this(i - 1) => v * 1.25,
        2 if kw(i - 3) == Kw::Without && (kw(i - 2) == Kw::Doubt || kw(i - 1) == Kw::Doubt) => v,
        2 if negated => v * N_SCALAR,
        _ => v,
    }
}

/// `_special_idioms_check` at `i` (at least three words in): a special-case
/// phrase ending at, or starting at, the word sets its valence; "kind of",
/// "sort of" or "just enough" before it dampens it.
fn idioms(mut v: f64, tokens: &[Token], i: usize) -> f64 {
    let kw = |j: usize| tokens[j].entry.kw;
    let before = [
        special_case2(kw(i - 1), kw(i)),
        special_case3(kw(i - 2), kw(i - 1), kw(i)),
        special_case2(kw(i - 2), kw(i - 1)),
        special_case3(kw(i - 3), kw(i - 2), kw(i - 1)),
        special_case2(kw(i - 3), kw(i - 2)),
    ];
    if let Some(set) = before.into_iter().flatten().next() {
        v = set;
    }
    if i + 1 < tokens.len()
        && let Some(set) = special_case2(kw(i), kw(i + 1))
    {
        v = set;
    }
    if i + 2 < tokens.len()
        && let Some(set) = special_case3(kw(i), kw(i + 1), kw(i + 2))
    {
        v = set;
    }
    for (a, b) in [(i - 3, i - 2), (i - 2, i - 1)] {
        if let Some(d) = booster2(kw(a), kw(b)) {
            v += d;
        }
    }
    v
}

/// `_least_check`: "least" before a word negates it, except in "at least"
/// and "very least".
fn least(v: f64, tokens: &[Token], i: usize) -> f64 {
    if i == 0 || tokens[i - 1].entry.lex.is_some() || tokens[i - 1].entry.kw != Kw::Least {
        return v;
    }
    if i > 1 && matches!(tokens[i - 2].entry.kw, Kw::At | Kw::Very) {
        v
    } else {
        v * N_SCALAR
    }
}

/// `_but_check`: valences before the first "but" are halved, those after it
/// grow by half. Python finds each valence's position with `list.index`
/// while rewriting the list, so a valence equal to an earlier one (after
/// that one's own rewrite) lands on the earlier position instead: repeated
/// valences scale the first of them again and leave the others as they were.
/// This keeps that behaviour, which is what the reference scores.
pub(crate) fn but(tokens: &[Token], sentiments: &mut [f64]) {
    let Some(bi) = tokens.iter().position(|t| t.entry.kw == Kw::But) else {
        return;
    };
    for k in 0..sentiments.len() {
        let v = sentiments[k];
        let si = sentiments.iter().position(|&x| x == v).unwrap_or(k);
        if si < bi {
            sentiments[si] = v * 0.5;
        } else if si > bi {
            sentiments[si] = v * 1.5;
        }
    }
}
