//! Images as API inputs and outputs (BentoML's `bentoml.io.Image`): what
//! `curl -F image=@digit.png` or `curl --data-binary @x.jpg -H
//! 'Content-Type: image/jpeg'` sends, decoded into an [`image::DynamicImage`].
//!
//! Only PNG and JPEG are decoded (the `image` crate is built with those two
//! codecs alone). The format is read from the bytes, not trusted from the
//! client's content type. Decoding is bounded twice: the encoded body by the
//! API server's `api_server.http.max_request_size`, and the decoded image
//! by [`MAX_SIDE`] pixels a side and [`MAX_DECODED_BYTES`] of pixel memory,
//! so a small file that claims to be 100000x100000 is refused before any
//! allocation rather than decoded. Every refusal is a 400 that says why.

use std::io::Cursor;

use bytes::Bytes;
/// The `image` crate this module decodes with (PNG and JPEG codecs only).
pub use image;
pub use image::DynamicImage;
use image::{ImageFormat, ImageReader, Limits};

use crate::error::ApiError;
use crate::io::{IoDescriptor, IoKind, IoSpec};
use crate::multipart;

/// The longest side, in pixels, of an image an API accepts.
pub const MAX_SIDE: u32 = 8192;

/// The most memory a decoded image may take (64 MiB).
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// A PNG or JPEG body, or the `image` field of a `multipart/form-data` body
/// (else its first file part), as a decoded image; encoded back as PNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct Image;

/// Decodes PNG or JPEG bytes within the limits above; 400 naming why not.
pub fn decode_image(data: &[u8]) -> Result<DynamicImage, ApiError> {
    let reader = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| ApiError::bad_request(format!("cannot read the image: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported image format {other:?}; send PNG or JPEG"
            )));
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "the body is not a PNG or JPEG image ({} bytes, starting {:02x?})",
                data.len(),
                &data[..data.len().min(8)]
            )));
        }
    }
    let mut reader = reader;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| {
        ApiError::bad_request(format!(
            "cannot decode the image (at most {MAX_SIDE} pixels a side and \
             {MAX_DECODED_BYTES} bytes decoded): {e}"
        ))
    })
}

impl IoDescriptor for Image {
    type Value = DynamicImage;
    const KIND: IoKind = IoKind::Bytes;

    fn decode(body: Bytes) -> Result<DynamicImage, ApiError> {
        decode_image(&body)
    }

    fn decode_request(body: Bytes, content_type: Option<&str>) -> Result<DynamicImage, ApiError> {
        if multipart::is_form_data(content_type) {
            let ct = content_type.unwrap_or_default();
            let part = multipart::pick(multipart::parse(ct, body)?, "image")?;
            return decode_image(&part.data);
        }
        match content_type.map(multipart::essence) {
            None => {}
            Some(e) if e.starts_with("image/") || e == "application/octet-stream" => {}
            Some(other) => {
                return Err(ApiError::unsupported_media_type(format!(
                    "unsupported content type {other:?}; send an image/png or image/jpeg \
                         body, or multipart/form-data with the image as field 'image'"
                )));
            }
        }
        decode_image(&body)
    }

    fn encode(value: DynamicImage) -> Result<Bytes, ApiError> {
        let mut out = Cursor::new(Vec::new());
        value
            .write_to(&mut out, ImageFormat::Png)
            .map_err(|e| ApiError::internal(format!("cannot encode the output image: {e}")))?;
        Ok(Bytes::from(out.into_inner()))
    }

    fn spec() -> IoSpec {
        IoSpec {
            media_type: "image/*".to_string(),
            schema: serde_json::json!({ "type": "string", "format": "binary" }),
            bentoml: serde_json::json!({
                "id": "bentoml.io.Image",
                "args": { "pilmode": null, "mime_type": "image/png",
                          "allowed_mime_types": ["image/png", "image/jpeg"] },
            }),
            example: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Bytes {
        Image::encode(DynamicImage::new_luma8(w, h)).unwrap()
    }

    #[test]
    fn png_bodies_and_form_fields_decode() {
        let img = Image::decode_request(png(3, 2), Some("image/png")).unwrap();
        assert_eq!((img.width(), img.height()), (3, 2));
        let mut body =
            b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n\r\n"
                .to_vec();
        body.extend_from_slice(&png(8, 8));
        body.extend_from_slice(b"\r\n--b--\r\n");
        let img = Image::decode_request(Bytes::from(body), Some("multipart/form-data; boundary=b"))
            .unwrap();
        assert_eq!(img.width(), 8);
    }

    #[test]
    fn bad_images_are_400s_naming_why() {
        let e = Image::decode_request(Bytes::from_static(b"hello"), None).unwrap_err();
        assert!(e.message.contains("not a PNG or JPEG"), "{}", e.message);
        let mut truncated = png(16, 16).to_vec();
        truncated.truncate(30);
        let e = Image::decode(Bytes::from(truncated)).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("cannot decode"), "{}", e.message);
        let e = Image::decode_request(png(1, 1), Some("text/plain")).unwrap_err();
        assert_eq!(e.status, 415);
        // A GIF header is recognised but not decoded.
        let e = Image::decode(Bytes::from_static(b"GIF89a\x01\x00\x01\x00")).unwrap_err();
        assert!(
            e.message.contains("send PNG or JPEG") || e.message.contains("not a PNG"),
            "{}",
            e.message
        );
        // A PNG header announcing a huge image is refused by the limits.
        let huge = image::DynamicImage::new_luma8(MAX_SIDE + 1, 1);
        let e = Image::decode(Image::encode(huge).unwrap()).unwrap_err();
        assert!(e.message.contains("pixels a side"), "{}", e.message);
    }
}
