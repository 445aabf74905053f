//! The `endpoint` label of the API-server metric families
//! (`bentoml_api_server_request_total` and its kin), as BentoML sets it:
//! the request's path.
//!
//! A path this server routes ([`Route::is_labelled`]) is its own label. Any
//! other path is a client's choice (a scanner's, a typo), so labelling each
//! by itself would let clients grow the number of series without bound:
//! unknown paths are their own labels only up to [`MAX_UNKNOWN_ENDPOINTS`]
//! distinct values of at most [`MAX_UNKNOWN_ENDPOINT_LEN`] bytes, and share
//! [`OTHER_ENDPOINT`] past either cap.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::route::Route;

/// Distinct unknown endpoints labelled by their own name; beyond this,
/// scanners and typos share one label so they cannot blow up the series count.
const MAX_UNKNOWN_ENDPOINTS: usize = 100;
/// Longest unknown path labelled by itself: a longer one (a scanner's, or an
/// attack on the exposition's size) shares [`OTHER_ENDPOINT`], so unknown
/// labels cost at most `MAX_UNKNOWN_ENDPOINTS × MAX_UNKNOWN_ENDPOINT_LEN`
/// bytes per series family whatever clients send.
const MAX_UNKNOWN_ENDPOINT_LEN: usize = 64;
/// `endpoint` label for unknown endpoints past [`MAX_UNKNOWN_ENDPOINTS`] or
/// longer than [`MAX_UNKNOWN_ENDPOINT_LEN`].
pub(crate) const OTHER_ENDPOINT: &str = "/__unmatched__";

/// The unknown endpoints labelled by themselves so far.
#[derive(Default)]
pub(crate) struct EndpointLabels {
    unknown: Mutex<HashSet<String>>,
}

impl EndpointLabels {
    /// The `endpoint` label of a request to `path`, which `route` resolved.
    pub fn label<'a>(&self, route: Route<'_>, path: &'a str) -> &'a str {
        if route.is_labelled() {
            return path;
        }
        if path.len() > MAX_UNKNOWN_ENDPOINT_LEN {
            return OTHER_ENDPOINT;
        }
        let mut seen = self.unknown.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(path) {
            return path;
        }
        if seen.len() < MAX_UNKNOWN_ENDPOINTS {
            seen.insert(path.to_string());
            return path;
        }
        OTHER_ENDPOINT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_are_their_own_labels_up_to_the_caps_and_known_ones_always() {
        let labels = EndpointLabels::default();
        let long = format!("/{}", "x".repeat(MAX_UNKNOWN_ENDPOINT_LEN));
        assert_eq!(labels.label(Route::Unknown, &long), OTHER_ENDPOINT);
        let paths: Vec<String> = (0..MAX_UNKNOWN_ENDPOINTS)
            .map(|i| format!("/{i}"))
            .collect();
        for p in &paths {
            assert_eq!(labels.label(Route::Unknown, p), p);
        }
        assert_eq!(labels.label(Route::Unknown, "/one-more"), OTHER_ENDPOINT);
        assert_eq!(
            labels.label(Route::Unknown, "/0"),
            "/0",
            "seen before the cap"
        );
        assert_eq!(labels.label(Route::Live, "/livez"), "/livez");
        assert_eq!(
            labels.label(Route::Live, &long),
            long,
            "known paths are not capped"
        );
    }
}
