//! `multipart/form-data` bodies (RFC 7578), as `curl -F name=@file` sends
//! them: the parts of a body that is already in memory.
//!
//! The API server reads the whole body first (bounded by
//! `api_server.http.max_request_size`), so parsing never waits on the
//! network: [`multer`] runs over a one-chunk stream, polled to the end on
//! the calling thread. Parts are counted ([`MAX_PARTS`]) so that a body of
//! thousands of empty parts is refused instead of walked.

use bytes::Bytes;

use crate::error::ApiError;

/// The most parts one body may have.
pub const MAX_PARTS: usize = 64;

/// One part of a form: its field name, file name and content type as the
/// client sent them, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The form field's name (`image` in `-F image=@digit.png`).
    pub name: Option<String>,
    /// The file name, when the part is a file upload.
    pub filename: Option<String>,
    /// The part's own `Content-Type`, if it has one.
    pub content_type: Option<String>,
    /// The part's bytes.
    pub data: Bytes,
}

/// The lower-cased media type of a `Content-Type` value, parameters dropped.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a `Content-Type` is `multipart/form-data`.
pub fn is_form_data(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| essence(ct) == "multipart/form-data")
}

/// Every part of a `multipart/form-data` body; 400 naming what is wrong
/// (no boundary, a malformed body, too many parts).
pub fn parse(content_type: &str, body: Bytes) -> Result<Vec<Part>, ApiError> {
    let boundary = multer::parse_boundary(content_type).map_err(|e| {
        ApiError::bad_request(format!(
            "multipart body without a usable boundary in its Content-Type: {e}"
        ))
    })?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let bad = |e: multer::Error| ApiError::bad_request(format!("malformed multipart body: {e}"));
    futures::executor::block_on(async {
        let mut parts = Vec::new();
        while let Some(field) = form.next_field().await.map_err(bad)? {
            if parts.len() == MAX_PARTS {
                return Err(ApiError::bad_request(format!(
                    "multipart body has more than {MAX_PARTS} parts"
                )));
            }
            let name = field.name().map(str::to_string);
            let filename = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(|m| m.to_string());
            let data = field.bytes().await.map_err(bad)?;
            parts.push(Part {
                name,
                filename,
                content_type,
                data,
            });
        }
        Ok(parts)
    })
}

/// The part an upload API reads: the one named `preferred`, else the first
/// with a file name, else the only one; 400 naming the fields otherwise.
pub fn pick(mut parts: Vec<Part>, preferred: &str) -> Result<Part, ApiError> {
    let index = parts
        .iter()
        .position(|p| p.name.as_deref() == Some(preferred))
        .or_else(|| parts.iter().position(|p| p.filename.is_some()))
        .or((parts.len() == 1).then_some(0));
    if let Some(i) = index {
        return Ok(parts.swap_remove(i));
    }
    if parts.is_empty() {
        return Err(ApiError::bad_request(format!(
            "multipart body has no parts; send the file as field '{preferred}' \
             (curl -F {preferred}=@FILE)"
        )));
    }
    let names: Vec<&str> = parts
        .iter()
        .map(|p| p.name.as_deref().unwrap_or("(unnamed)"))
        .collect();
    Err(ApiError::bad_request(format!(
        "multipart body has no field '{preferred}' and no file part (fields: {})",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Bytes) {
        let mut body = Vec::new();
        for (name, file, data) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
            let disp = match file {
                Some(f) => format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: image/png\r\n\r\n"
                ),
                None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
            };
            body.extend_from_slice(disp.as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        (
            "multipart/form-data; boundary=XyZ".into(),
            Bytes::from(body),
        )
    }

    #[test]
    fn parts_are_read_with_names_files_and_types() {
        let (ct, body) = form(&[("note", None, b"hi"), ("image", Some("d.png"), b"\x89PNG")]);
        let parts = parse(&ct, body).unwrap();
        assert_eq!(parts.len(), 2);
        let p = pick(parts, "image").unwrap();
        assert_eq!(p.filename.as_deref(), Some("d.png"));
        assert_eq!(p.content_type.as_deref(), Some("image/png"));
        assert_eq!(&p.data[..], b"\x89PNG");
    }

    #[test]
    fn malformed_forms_are_400s_naming_why() {
        let e = parse("multipart/form-data", Bytes::from_static(b"x")).unwrap_err();
        assert!(e.message.contains("boundary"), "{}", e.message);
        let e = parse(
            "multipart/form-data; boundary=XyZ",
            Bytes::from_static(b"--XyZ\r\nno headers end"),
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        let (ct, body) = form(&[("a", None, b"1"), ("b", None, b"2")]);
        let e = pick(parse(&ct, body).unwrap(), "image").unwrap_err();
        assert!(e.message.contains("fields: a, b"), "{}", e.message);
        let many: Vec<(&str, Option<&str>, &[u8])> =
            (0..=MAX_PARTS).map(|_| ("a", None, &b""[..])).collect();
        let (ct, body) = form(&many);
        assert!(parse(&ct, body).unwrap_err().message.contains("more than"));
    }
}
