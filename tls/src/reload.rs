//! A server config that follows its files.
//!
//! Certificates are rotated by writing new files (cert-manager, certbot, a
//! Kubernetes secret's projected volume, which swaps a symlink). A
//! [`Reloading`] config is read by every new connection
//! ([`Reloading::current`]); [`Reloading::watch`] looks at the files'
//! contents every [`CHECK_EVERY`] and on SIGHUP, and rebuilds the config
//! when something changed. A file that cannot be used (half-written, a key
//! that does not match yet, garbage) leaves the old config serving: the
//! caller is told, to log and count it, and the next change or SIGHUP tries
//! again. A connection keeps the config it began its handshake with, so
//! rotation never drops one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;

use crate::{TlsError, TlsFiles, Validity};

/// How often the files are compared with what was loaded.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of a file: a hash of its bytes. Metadata
/// is not enough: a file rewritten in place within one tick of the
/// kernel's coarse clock keeps its mtime, and a new certificate often has
/// the old one's length. Reading a few kilobytes a second costs nothing.
type Stamp = u64;

fn stamp(path: &Path) -> Option<Stamp> {
    use std::hash::{Hash, Hasher};
    // Follows symlinks: a Kubernetes secret volume swaps the link's target.
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// A TLS server config rebuilt from its files when they change.
#[derive(Debug)]
pub struct Reloading {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<Stamp>>>,
    validity: Mutex<Validity>,
}

/// What one look at the files found.
#[derive(Debug)]
pub enum Reload {
    /// Nothing changed since the last load.
    Unchanged,
    /// New files were loaded and serve every new connection.
    Loaded(Validity),
    /// The files changed but cannot be used: the old config still serves.
    Failed(TlsError),
}

impl Reloading {
    /// Loads `files` for the first time: an error here is a start-up error.
    pub fn load(files: TlsFiles) -> Result<Reloading, TlsError> {
        let stamps = files.paths().into_iter().map(stamp).collect();
        let (config, identity) = files.build()?;
        Ok(Reloading {
            files,
            current: RwLock::new(config),
            stamps: Mutex::new(stamps),
            validity: Mutex::new(identity.validity),
        })
    }

    /// The config a new connection should use.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read())
    }

    /// The validity dates of the certificate being served.
    pub fn validity(&self) -> Validity {
        *self.validity.lock()
    }

    /// The files, as given.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Rebuilds the config if the files changed since the last attempt,
    /// or unconditionally when `force` (SIGHUP).
    pub fn reload(&self, force: bool) -> Reload {
        let now: Vec<Option<Stamp>> = self.files.paths().into_iter().map(stamp).collect();
        {
            let mut stamps = self.stamps.lock();
            if !force && *stamps == now {
                return Reload::Unchanged;
            }
            // Tried once per change: a bad file is not re-read every second.
            *stamps = now;
        }
        match self.files.build() {
            Ok((config, identity)) => {
                *self.current.write() = config;
                *self.validity.lock() = identity.validity;
                Reload::Loaded(identity.validity)
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// Reloads on every change of the files and on SIGHUP, until the
    /// returned task is aborted; `report` hears every load and failure.
    pub fn watch(
        self: &Arc<Self>,
        report: impl Fn(&Reload) + Send + 'static,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup())?;
        let this = Arc::clone(self);
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let force = tokio::select! {
                    _ = tick.tick() => false,
                    _ = hangup.recv() => true,
                };
                // Reading and parsing files blocks: keep it off the I/O threads.
                let that = Arc::clone(&this);
                let outcome = tokio::task::spawn_blocking(move || that.reload(force)).await;
                if let Ok(outcome) = outcome {
                    report(&outcome);
                }
            }
        }))
    }
}
