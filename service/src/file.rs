//! Files as API inputs and outputs (BentoML's `bentoml.io.File`): the bytes,
//! with the file name and content type the client gave, whether they came
//! as the `file` field of a `multipart/form-data` body (`curl -F
//! file=@report.pdf`) or as the raw body (`curl --data-binary @report.pdf`).
//! [`crate::Binary`] stays the plain-bytes descriptor; this one keeps the
//! metadata and unpacks forms.

use bytes::Bytes;

use crate::error::ApiError;
use crate::io::{IoDescriptor, IoKind};
use crate::multipart;

/// A file body or form field: bytes plus the client's name and type.
#[derive(Debug, Clone, Copy, Default)]
pub struct File;

/// What a [`File`] input carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    /// The file's bytes.
    pub data: Bytes,
    /// The file name (multipart uploads only).
    pub filename: Option<String>,
    /// The part's content type, or the request's for a raw body.
    pub content_type: Option<String>,
}

impl IoDescriptor for File {
    type Value = FileInput;
    const KIND: IoKind = IoKind::Bytes;

    fn decode(body: Bytes) -> Result<FileInput, ApiError> {
        Self::decode_request(body, None)
    }

    fn decode_request(body: Bytes, content_type: Option<&str>) -> Result<FileInput, ApiError> {
        if let Some(ct) = content_type.filter(|ct| multipart::is_form_data(Some(ct))) {
            let part = multipart::pick(multipart::parse(ct, body)?, "file")?;
            return Ok(FileInput {
                data: part.data,
                filename: part.filename,
                content_type: part.content_type,
            });
        }
        Ok(FileInput {
            data: body,
            filename: None,
            content_type: content_type.map(str::to_string),
        })
    }

    fn encode(value: FileInput) -> Result<Bytes, ApiError> {
        Ok(value.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bodies_and_form_files_keep_their_metadata() {
        let raw = File::decode_request(Bytes::from_static(b"abc"), Some("text/csv")).unwrap();
        assert_eq!(raw.content_type.as_deref(), Some("text/csv"));
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\
                     Content-Type: text/csv\r\n\r\nx,y\r\n--b--\r\n";
        let f = File::decode_request(
            Bytes::from_static(body),
            Some("multipart/form-data; boundary=b"),
        )
        .unwrap();
        assert_eq!(f.filename.as_deref(), Some("a.csv"));
        assert_eq!(&f.data[..], b"x,y");
    }
}
