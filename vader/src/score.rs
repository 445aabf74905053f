//! From word valences to the four scores: punctuation emphasis, the
//! normalized compound, the positive/negative/neutral proportions, and
//! Python's `round`.

use crate::Scores;

/// Each "!" (up to four) adds this to the sentence's magnitude.
const EP_INCR: f64 = 0.292;
/// Two or three "?" add this each; four or more add [`QM_MAX`].
const QM_INCR: f64 = 0.18;
const QM_MAX: f64 = 0.96;
/// `normalize`'s alpha: the sum at which the compound reaches ~0.63.
const ALPHA: f64 = 15.0;

/// `score_valence`: the scores of a sentence whose words have the valences
/// `sentiments` (after the "but" rule); `text` is the sentence after emoji
/// substitution, where the "!" and "?" are counted.
pub(crate) fn scores(sentiments: &[f64], text: &str) -> Scores {
    if sentiments.is_empty() {
        return Scores {
            neg: 0.0,
            neu: 0.0,
            pos: 0.0,
            compound: 0.0,
        };
    }
    // Python's `sum` adds left to right from 0 (3.11; 3.12's compensated
    // float sum would differ in the last bit).
    let mut sum = sentiments.iter().fold(0.0, |acc, &s| acc + s);
    let punct = punctuation_emphasis(text);
    if sum > 0.0 {
        sum += punct;
    } else if sum < 0.0 {
        sum -= punct;
    }
    let compound = normalize(sum);

    // `_sift_sentiment_scores`: each positive word counts 1 + its valence,
    // each negative one 1 + |valence|, each neutral one 1.
    let (mut pos_sum, mut neg_sum, mut neu_count) = (0.0, 0.0, 0u32);
    for &s in sentiments {
        if s > 0.0 {
            pos_sum += s + 1.0;
        }
        if s < 0.0 {
            neg_sum += s - 1.0;
        }
        if s == 0.0 {
            neu_count += 1;
        }
    }
    // The emphasis goes to whichever side dominates.
    if pos_sum > neg_sum.abs() {
        pos_sum += punct;
    } else if pos_sum < neg_sum.abs() {
        neg_sum -= punct;
    }
    let total = pos_sum + neg_sum.abs() + f64::from(neu_count);
    Scores {
        neg: py_round((neg_sum / total).abs(), 1e3),
        neu: py_round((f64::from(neu_count) / total).abs(), 1e3),
        pos: py_round((pos_sum / total).abs(), 1e3),
        compound: py_round(compound, 1e4),
    }
}

/// `_punctuation_emphasis`: `_amplify_ep` plus `_amplify_qm`.
fn punctuation_emphasis(text: &str) -> f64 {
    let (mut ep, mut qm) = (0u32, 0u32);
    for &b in text.as_bytes() {
        ep += u32::from(b == b'!');
        qm += u32::from(b == b'?');
    }
    let ep_amplifier = f64::from(ep.min(4)) * EP_INCR;
    let qm_amplifier = match qm {
        0 | 1 => 0.0,
        2 | 3 => f64::from(qm) * QM_INCR,
        _ => QM_MAX,
    };
    ep_amplifier + qm_amplifier
}

/// `normalize`: maps a sum of valences into (-1, 1).
fn normalize(score: f64) -> f64 {
    (score / (score * score + ALPHA).sqrt()).clamp(-1.0, 1.0)
}

/// Python's `round(x, n)` with `scale` = 10^n: the decimal with n digits
/// nearest to the exact binary value of `x` (ties to even), read back as
/// the nearest double. `(x * scale).round() / scale` is not it: the product
/// rounds, and can land on or off a tie the exact value is not on.
///
/// `x * scale` is `p + e` exactly (`e` from a fused multiply-add); `p`
/// rounded to an integer is the answer unless `p` lies exactly halfway,
/// where the sign of `e` says on which side the exact product lies.
/// `n / scale` is then correctly rounded, as Python's `strtod` of the
/// decimal string is.
pub(crate) fn py_round(x: f64, scale: f64) -> f64 {
    let p = x * scale;
    let mut n = p.round_ties_even();
    let d = p - n;
    if d.abs() == 0.5 {
        let e = x.mul_add(scale, -p);
        if d > 0.0 && e > 0.0 {
            n += 1.0;
        } else if d < 0.0 && e < 0.0 {
            n -= 1.0;
        }
    }
    n / scale
}
