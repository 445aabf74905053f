//! Certificates, keys and CA bundles from PEM files.
//!
//! Python's `ssl` module (what BentoML's uvicorn serves with) reads the same
//! files: a certificate chain (server first), a private key in any of the
//! PEM forms OpenSSL writes (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`,
//! SEC1 `EC PRIVATE KEY`, or `ENCRYPTED PRIVATE KEY` with a password), and a
//! bundle of CA certificates. OpenSSL's older encrypted form (`Proc-Type:
//! 4,ENCRYPTED` inside an RSA or EC block) is refused with the command that
//! converts it, since no maintained pure-Rust crate reads it.
//!
//! Every error names the setting and the file ([`Named`]); a key that does
//! not belong to the certificate is an error here, at load, rather than a
//! handshake failure later.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::{Named, TlsError};

/// A certificate chain with its private key, checked to belong together.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The chain and the signing key, as rustls serves them.
    pub certified: Arc<CertifiedKey>,
    /// When the first (server) certificate is valid.
    pub validity: Validity,
}

/// The validity dates of a certificate, in seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before this.
    pub not_before: i64,
    /// Not valid after this.
    pub not_after: i64,
}

impl Validity {
    /// A warning to print when the certificate is not valid at `now`
    /// (seconds since the epoch), naming the date; `None` when it is.
    pub fn warning(&self, now: i64) -> Option<String> {
        if now > self.not_after {
            Some(format!("expired on {}", date(self.not_after)))
        } else if now < self.not_before {
            Some(format!("is not valid before {}", date(self.not_before)))
        } else {
            None
        }
    }
}

/// `secs` since the epoch as an RFC 3339 UTC time.
fn date(secs: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(secs) {
        Ok(t) => {
            let d = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        }
        Err(_) => format!("{secs} (seconds since 1970)"),
    }
}

/// Reads `file` whole.
fn read(file: &Named) -> Result<Vec<u8>, TlsError> {
    std::fs::read(&file.path).map_err(|cause| TlsError::Read {
        file: file.clone(),
        cause,
    })
}

/// The certificates in the PEM file `file`, in order; at least one.
pub fn certificates(file: &Named) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(file, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(content(
            file,
            "holds no certificate (no '-----BEGIN CERTIFICATE-----' block)",
        ));
    }
    Ok(certs)
}

fn content(file: &Named, reason: impl Into<String>) -> TlsError {
    TlsError::Content {
        file: file.clone(),
        reason: reason.into(),
    }
}

/// The private key in the PEM file `file`, decrypted with `password` when
/// it is an encrypted PKCS#8 key.
pub fn private_key(
    file: &Named,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(file)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(content(
            file,
            "is encrypted in OpenSSL's legacy form, which is not supported; \
             convert it with `openssl pkcs8 -topk8 -in OLD -out NEW` (PKCS#8, with a password)",
        ));
    }
    if let Some(start) = text.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(password) = password else {
            return Err(content(
                file,
                "is encrypted: set api_server.ssl.keyfile_password (--ssl-keyfile-password)",
            ));
        };
        let (_, doc) = pkcs8::Document::from_pem(&text[start..])
            .map_err(|e| content(file, format!("holds an unreadable encrypted key ({e})")))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| content(file, format!("holds an unreadable encrypted key ({e})")))?;
        let plain = info.decrypt(password.as_bytes()).map_err(|_| {
            content(
                file,
                "cannot be decrypted: the password (api_server.ssl.keyfile_password) is wrong \
                 or the encryption is not supported",
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        content(
            file,
            format!("holds no private key (PKCS#8, RSA or EC, in PEM) ({e})"),
        )
    })
}

/// The validity dates of `cert`.
pub fn validity(cert: &CertificateDer<'_>, file: &Named) -> Result<Validity, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
        content(
            file,
            format!("holds a certificate that does not parse ({e})"),
        )
    })?;
    let v = parsed.validity();
    Ok(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

impl Identity {
    /// Loads the chain in `cert` and the key in `key` (decrypted with
    /// `password`), and checks that the key is the certificate's.
    pub fn load(cert: &Named, key: &Named, password: Option<&str>) -> Result<Identity, TlsError> {
        let chain = certificates(cert)?;
        let validity = validity(&chain[0], cert)?;
        let key_der = private_key(key, password)?;
        let signing = crate::provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| content(key, format!("holds a key rustls cannot use ({e})")))?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::Settings(format!(
                    "{key} does not hold the private key of the certificate in {cert}"
                )));
            }
            // The key cannot tell its public half: rustls checks at the handshake.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => {
                return Err(content(
                    cert,
                    format!("holds a certificate rustls cannot serve ({e})"),
                ));
            }
        }
        Ok(Identity {
            certified: Arc::new(certified),
            validity,
        })
    }
}

/// The CA certificates in `file`, as a trust store for client certificates.
pub fn roots(file: &Named) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certificates(file)?);
    if added == 0 {
        return Err(content(
            file,
            format!("holds no usable CA certificate ({ignored} could not be used)"),
        ));
    }
    Ok(store)
}
