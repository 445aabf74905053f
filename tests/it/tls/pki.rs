//! The test certificates: tests/fixtures/tls/make_certs.sh run with the
//! real `openssl` into a scratch directory that lives as long as the test
//! (removed on drop, panics included). The script's header lists every file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{require_tool, run_with_timeout};

/// The password of `server-enc.key` (the script writes it to key-password.txt).
pub const KEY_PASSWORD: &str = "correct horse battery staple";

/// The serial numbers the script gives the two server certificates.
pub const SERIAL_1: &str = "1001";
pub const SERIAL_2: &str = "1002";

/// A directory of certificates and keys made for one test.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes every certificate of make_certs.sh in a fresh directory.
    pub fn new() -> Pki {
        require_tool("openssl");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("tiffin-tls-{}-{nanos}", std::process::id()));
        let script = fixture("make_certs.sh");
        let out = run_with_timeout(
            Command::new("bash").arg(&script).arg(&dir),
            Duration::from_secs(60),
        );
        assert!(
            out.status.is_some_and(|s| s.success()),
            "{} failed ({:?}):\n{}{}",
            script.display(),
            out.status,
            out.stdout,
            out.stderr
        );
        Pki { dir }
    }

    /// The directory itself (tests write their own files into it too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One of the script's files, as a path.
    pub fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        assert!(p.is_file(), "make_certs.sh made no {}", p.display());
        p
    }

    /// One of the script's files, as a string for a command line.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// `--ssl-certfile DIR/cert --ssl-keyfile DIR/key`.
    pub fn ssl_flags(&self, cert: &str, key: &str) -> Vec<String> {
        vec![
            "--ssl-certfile".into(),
            self.file(cert),
            "--ssl-keyfile".into(),
            self.file(key),
        ]
    }

    /// `--ssl-ca-certs DIR/ca.pem --ssl-cert-reqs REQS` (mutual TLS).
    pub fn client_ca_flags(&self, reqs: u8) -> Vec<String> {
        vec![
            "--ssl-ca-certs".into(),
            self.file("ca.pem"),
            "--ssl-cert-reqs".into(),
            reqs.to_string(),
        ]
    }

    /// Copies `from` to `to` inside the directory through a temporary name
    /// and a rename, so a server watching `to` never reads half a file.
    pub fn replace(&self, from: &str, to: &str) {
        let tmp = self.dir.join(format!("{to}.tmp"));
        std::fs::copy(self.path(from), &tmp).expect("copy to the temporary name");
        std::fs::rename(&tmp, self.dir.join(to)).expect("rename over the live file");
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A file of tests/fixtures/tls/.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}
