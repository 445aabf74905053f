//! Which of the protocol's routes a path names, decided in one place.
//!
//! `/v2/health/live`, `/v2/health/ready`, `/v2`,
//! `/v2/models/{name}[/versions/{version}]`, the same with `/ready` or
//! `/infer` after it, and `/v2/repository/index`. A model name or version
//! is one path segment.

/// A route of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OipPath<'a> {
    /// `GET /v2/health/live`.
    Live,
    /// `GET /v2/health/ready`.
    Ready,
    /// `GET /v2`.
    Server,
    /// `GET /v2/models/{name}[/versions/{version}]`.
    Model(ModelRef<'a>),
    /// `GET /v2/models/{name}[/versions/{version}]/ready`.
    ModelReady(ModelRef<'a>),
    /// `POST /v2/models/{name}[/versions/{version}]/infer`.
    Infer(ModelRef<'a>),
    /// `POST /v2/repository/index`.
    Index,
}

/// A model named in a path, with the version if the path names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRef<'a> {
    /// The model's name.
    pub name: &'a str,
    /// Its version, if named.
    pub version: Option<&'a str>,
}

/// The route `path` names, if it is one of the protocol's.
pub fn parse(path: &str) -> Option<OipPath<'_>> {
    let rest = path.strip_prefix("/v2")?;
    let segments: Vec<&str> = match rest {
        "" | "/" => return Some(OipPath::Server),
        _ => rest.strip_prefix('/')?.split('/').collect(),
    };
    match segments.as_slice() {
        ["health", "live"] => Some(OipPath::Live),
        ["health", "ready"] => Some(OipPath::Ready),
        ["repository", "index"] => Some(OipPath::Index),
        ["models", name, tail @ ..] if !name.is_empty() => {
            let (version, tail) = match tail {
                ["versions", v, tail @ ..] if !v.is_empty() => (Some(*v), tail),
                _ => (None, tail),
            };
            let model = ModelRef { name, version };
            match tail {
                [] => Some(OipPath::Model(model)),
                ["ready"] => Some(OipPath::ModelReady(model)),
                ["infer"] => Some(OipPath::Infer(model)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The inference route of model `name`, at `version` if given.
pub fn infer(name: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("/v2/models/{name}/versions/{v}/infer"),
        None => format!("/v2/models/{name}/infer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_protocol_is_recognised() {
        let m = |name, version| ModelRef { name, version };
        assert_eq!(parse("/v2"), Some(OipPath::Server));
        assert_eq!(parse("/v2/health/live"), Some(OipPath::Live));
        assert_eq!(parse("/v2/health/ready"), Some(OipPath::Ready));
        assert_eq!(parse("/v2/repository/index"), Some(OipPath::Index));
        assert_eq!(
            parse("/v2/models/digits"),
            Some(OipPath::Model(m("digits", None)))
        );
        assert_eq!(
            parse("/v2/models/digits/versions/3/ready"),
            Some(OipPath::ModelReady(m("digits", Some("3"))))
        );
        assert_eq!(
            parse(&infer("digits", Some("3"))),
            Some(OipPath::Infer(m("digits", Some("3"))))
        );
        assert_eq!(
            parse(&infer("digits", None)),
            Some(OipPath::Infer(m("digits", None)))
        );
    }

    #[test]
    fn other_paths_are_not_the_protocols() {
        for p in [
            "/v1/models/x",
            "/v2x",
            "/v2/models",
            "/v2/models/",
            "/v2/models/a/b",
            "/v2/health",
        ] {
            assert_eq!(parse(p), None, "{p}");
        }
    }
}
