//! Python's own string rules where they differ from Rust's: what counts as
//! whitespace, and `str.strip()` by it. The lexicon files are read and the
//! text is split by these, as vaderSentiment does under CPython.

/// Python's `str.isspace()` for one character: Unicode White_Space (Rust's
/// definition) plus the four ASCII information separators, which Python
/// counts as whitespace (bidirectional class B or S).
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.strip()`.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}
