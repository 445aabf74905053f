//! Tests of loading, reloading and serving, with certificates made by the
//! `openssl` command (as a user would make them) in a fresh directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::reload::Reload;
use crate::{Alpn, ClientAuth, Named, Reloading, TlsConn, TlsFiles};

/// A directory of test certificates: a CA, and server identities it signs.
struct Pki {
    dir: PathBuf,
}

/// Runs `openssl` with `args` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("tiffin-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(
            &dir,
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=testca",
        );
        Pki { dir }
    }

    /// A server key and certificate signed by the CA, as `<name>.key`/`.crt`.
    fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            &self.dir,
            &format!(
                "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {key} -out {csr} -subj /CN=localhost"
            ),
        );
        openssl(
            &self.dir,
            &format!(
                "x509 -req -in {csr} -CA ca.crt -CAkey ca.key -CAcreateserial -out {crt} -days 2 -extfile ext"
            ),
        );
        (self.dir.join(crt), self.dir.join(key))
    }

    fn files(&self, crt: &Path, key: &Path) -> TlsFiles {
        TlsFiles {
            cert: Named::new("api_server.ssl.certfile", crt),
            key: Named::new("api_server.ssl.keyfile", key),
            password: None,
            ca: None,
            client_auth: ClientAuth::None,
            alpn: Alpn::Http,
            only_tls13: false,
        }
    }

    fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        let ca = crate::load::certificates(&Named::new("ca", self.dir.join("ca.crt"))).unwrap();
        roots.add_parsable_certificates(ca);
        let config = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn error(files: &TlsFiles) -> String {
    files.build().map(|_| ()).unwrap_err().to_string()
}

#[test]
fn a_key_of_another_certificate_is_named_with_both_files() {
    let pki = Pki::new("mismatch");
    let (crt, _) = pki.server("a");
    let (_, other_key) = pki.server("b");
    let err = error(&pki.files(&crt, &other_key));
    assert!(
        err.contains("api_server.ssl.keyfile")
            && err.contains("does not hold the private key")
            && err.contains("api_server.ssl.certfile"),
        "{err}"
    );
}

#[test]
fn an_encrypted_pkcs8_key_loads_with_its_password_only() {
    let pki = Pki::new("encrypted");
    let (crt, key) = pki.server("a");
    openssl(
        &pki.dir,
        "pkcs8 -topk8 -in a.key -out enc.key -passout pass:hunter2 -v2 aes-256-cbc",
    );
    let mut files = pki.files(&crt, &pki.dir.join("enc.key"));
    assert!(error(&files).contains("is encrypted: set api_server.ssl.keyfile_password"));
    files.password = Some("wrong".into());
    assert!(error(&files).contains("cannot be decrypted"));
    files.password = Some("hunter2".into());
    files.build().unwrap();
    // A password for a key that is not encrypted is ignored, as Python's ssl does.
    let mut plain = pki.files(&crt, &key);
    plain.password = Some("unused".into());
    plain.build().unwrap();
}

#[test]
fn openssls_legacy_encrypted_form_is_refused_with_the_command_that_converts_it() {
    let pki = Pki::new("legacy");
    let (crt, _) = pki.server("a");
    openssl(
        &pki.dir,
        "ec -in a.key -out legacy.key -aes256 -passout pass:x",
    );
    let err = error(&pki.files(&crt, &pki.dir.join("legacy.key")));
    assert!(err.contains("openssl pkcs8 -topk8"), "{err}");
}

#[test]
fn missing_files_and_files_without_pem_blocks_name_their_setting() {
    let pki = Pki::new("missing");
    let (crt, key) = pki.server("a");
    let err = error(&pki.files(&pki.dir.join("nope.crt"), &key));
    assert!(
        err.starts_with("api_server.ssl.certfile (") && err.contains("cannot read"),
        "{err}"
    );
    std::fs::write(pki.dir.join("empty.pem"), "not pem\n").unwrap();
    let err = error(&pki.files(&pki.dir.join("empty.pem"), &key));
    assert!(err.contains("holds no certificate"), "{err}");
    let err = error(&pki.files(&crt, &pki.dir.join("empty.pem")));
    assert!(
        err.starts_with("api_server.ssl.keyfile (") && err.contains("no private key"),
        "{err}"
    );
    let mut files = pki.files(&crt, &key);
    files.client_auth = ClientAuth::Required;
    assert!(error(&files).contains("no CA bundle"));
}

#[test]
fn validity_warns_outside_the_dates_and_names_the_date() {
    let v = crate::Validity {
        not_before: 1_600_000_000,
        not_after: 1_700_000_000,
    };
    assert_eq!(v.warning(1_650_000_000), None);
    assert_eq!(
        v.warning(1_700_000_001).as_deref(),
        Some("expired on 2023-11-14T22:13:20Z")
    );
    assert_eq!(
        v.warning(1).as_deref(),
        Some("is not valid before 2020-09-13T12:26:40Z")
    );
}

#[test]
fn a_reload_takes_new_files_and_keeps_the_old_config_when_they_are_bad() {
    let pki = Pki::new("reload");
    let (crt, key) = pki.server("a");
    let reloading = Reloading::load(pki.files(&crt, &key)).unwrap();
    let first = reloading.current();
    assert!(matches!(reloading.reload(false), Reload::Unchanged));
    // A new pair, written over the old files.
    let (crt_b, key_b) = pki.server("b");
    std::fs::copy(&crt_b, &crt).unwrap();
    std::fs::copy(&key_b, &key).unwrap();
    assert!(matches!(reloading.reload(false), Reload::Loaded(_)));
    let second = reloading.current();
    assert!(!Arc::ptr_eq(&first, &second));
    // Garbage: the failure is reported once, and the second config serves on.
    std::fs::write(&crt, "garbage").unwrap();
    assert!(matches!(reloading.reload(false), Reload::Failed(_)));
    assert!(matches!(reloading.reload(false), Reload::Unchanged));
    assert!(Arc::ptr_eq(&second, &reloading.current()));
    // SIGHUP retries even when nothing changed.
    assert!(matches!(reloading.reload(true), Reload::Failed(_)));
}

/// A listener serving one connection through `TlsConn`, echoing what it reads.
async fn echo_server(
    config: Arc<rustls::ServerConfig>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let mut conn = TlsConn::new(stream, config);
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).await?;
        conn.write_all(&buf[..n]).await?;
        conn.shutdown().await
    });
    (addr, task)
}

#[tokio::test]
async fn a_tls_client_is_served_after_its_handshake() {
    let pki = Pki::new("serve");
    let (crt, key) = pki.server("a");
    let (config, _) = pki.files(&crt, &key).build().unwrap();
    let (addr, server) = echo_server(config).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = pki.client().connect(name, tcp).await.unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        None,
        "the client offered no ALPN"
    );
    tls.write_all(b"hello").await.unwrap();
    let mut back = Vec::new();
    tls.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"hello");
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_plaintext_http_request_gets_a_400_naming_tls_and_the_connection_closes() {
    let pki = Pki::new("plaintext");
    let (crt, key) = pki.server("a");
    let (config, _) = pki.files(&crt, &key).build().unwrap();
    let (addr, server) = echo_server(config).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("connection: close") && answer.ends_with("use https://\"}"),
        "{answer}"
    );
    let err = server.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_handshake_is_cut_off_at_the_bound() {
    let pki = Pki::new("silent");
    let (crt, key) = pki.server("a");
    let (config, _) = pki.files(&crt, &key).build().unwrap();
    let (addr, server) = echo_server(config).await;
    // Connects and says nothing: the paused clock jumps to the deadline.
    let _tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let err = server.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}
