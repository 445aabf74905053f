//! gRPC status codes and HTTP statuses, both ways, as BentoML maps them: a
//! handler's HTTP-style error becomes a gRPC code, and a call's code becomes
//! the `http_response_code` label and the access log's `status`.

use tiffin_service::ApiError;
use tonic::{Code, Status};

/// The gRPC status for an HTTP-style status from a handler, following
/// BentoML's `http_status_to_grpc_status_map` (plus 404 → `NOT_FOUND` and
/// other 4xx → `INVALID_ARGUMENT`); anything else is `UNKNOWN`, as in BentoML.
pub fn code_for_http_status(status: u16) -> Code {
    match status {
        200 => Code::Ok,
        400 | 413 | 415 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        422 => Code::FailedPrecondition,
        429 | 502 | 503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        500 => Code::Internal,
        405..=499 => Code::InvalidArgument,
        _ => Code::Unknown,
    }
}

/// The `http_response_code` label value for a gRPC status code: BentoML's
/// `to_http_status` (the inverse of its HTTP → gRPC map, 500 for codes not
/// in it), extended with `NOT_FOUND` → 404, which BentoML never emits.
pub fn http_status_for_code(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound | Code::Unimplemented => 404,
        Code::FailedPrecondition => 422,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        _ => 500,
    }
}

/// The gRPC status of a handler's error.
pub(super) fn status_from_api_error(e: ApiError) -> Status {
    Status::new(code_for_http_status(e.status), e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mappings_follow_bentoml() {
        assert_eq!(code_for_http_status(400), Code::InvalidArgument);
        assert_eq!(code_for_http_status(500), Code::Internal);
        assert_eq!(code_for_http_status(503), Code::Unavailable);
        assert_eq!(code_for_http_status(404), Code::NotFound);
        for (code, http) in [
            (Code::Ok, 200),
            (Code::InvalidArgument, 400),
            (Code::NotFound, 404),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Unknown, 500),
            (Code::Cancelled, 500),
        ] {
            assert_eq!(http_status_for_code(code), http, "{code:?}");
        }
    }
}
