//! The model store, like BentoML's (`bentoml models import/list/get/delete/
//! export`): model files copied under `$TIFFIN_HOME/models/NAME/VERSION/`,
//! each beside a `model.json` that says what it is.
//!
//! Layout of one entry:
//!
//! ```text
//! $TIFFIN_HOME/models/digits/20261202T013500Z-a587a3/
//!     model.onnx   the imported bytes, unchanged
//!     model.json   Metadata: name, version, sha256, size, created,
//!                  framework, inputs/outputs (read from the model), labels
//! ```
//!
//! Why this shape: versions are generated from the import time (UTC, to the
//! second) plus the file's hash prefix, so they sort by age as strings and
//! `NAME:latest` is simply the greatest; two imports of the same file in the
//! same second get a `.1`, `.2` suffix. An entry is written into a hidden
//! temporary directory and renamed into place, so a crash mid-import never
//! leaves a half entry that `list` would show. Every read of an entry
//! re-hashes the file and compares it with the recorded sha256, so a file
//! changed or damaged after import is reported ([`StoreError::Corrupt`])
//! rather than served.
//!
//! `$TIFFIN_HOME` defaults to `$XDG_DATA_HOME/tiffin`, else
//! `~/.local/share/tiffin` (the XDG base-directory default; BentoML's own
//! default is `~/bentoml`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tiffin_onnx::TensorInfo;

/// The variable naming tiffin's home directory.
pub const HOME_ENV: &str = "TIFFIN_HOME";

/// The file name of an entry's model.
pub const MODEL_FILE: &str = "model.onnx";

/// The file name of an entry's metadata.
pub const METADATA_FILE: &str = "model.json";

/// The longest model name or version.
pub const MAX_NAME_LEN: usize = 63;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A tag that is not `NAME` or `NAME:VERSION`.
    #[error(
        "invalid model tag {tag:?}: {reason} (expected NAME or NAME:VERSION, where NAME and \
         VERSION are 1 to 63 of A-Z a-z 0-9 _ . - and do not start with . or -)"
    )]
    BadTag {
        /// The tag given.
        tag: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label that is not `key=value`.
    #[error("invalid label {0:?}: expected key=value")]
    BadLabel(String),
    /// No model of that name, or no such version.
    #[error("no model {tag} in the store at {root} ({hint})")]
    NotFound {
        /// The tag looked up.
        tag: String,
        /// The store's directory.
        root: PathBuf,
        /// What the store does have.
        hint: String,
    },
    /// The command needs an explicit version.
    #[error("{0}")]
    NeedsVersion(String),
    /// An entry whose files do not match its metadata.
    #[error("model {tag} in the store is corrupt ({path}): {reason}")]
    Corrupt {
        /// The entry's tag.
        tag: String,
        /// The entry's directory.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The file to import is not a servable model.
    #[error(transparent)]
    Model(#[from] tiffin_onnx::OnnxError),
    /// The filesystem refused.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// No home directory to put the store in.
    #[error("cannot find a home for the model store: set ${HOME_ENV} (or $XDG_DATA_HOME or $HOME)")]
    NoHome,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// `NAME` or `NAME:VERSION` (`NAME:latest` is the newest version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The model name.
    pub name: String,
    /// The version; `None` for `NAME` or `NAME:latest`.
    pub version: Option<String>,
}

fn check_part(tag: &str, what: &str, part: &str) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::BadTag {
        tag: tag.to_string(),
        reason,
    };
    if part.is_empty() {
        return Err(bad(format!("the {what} is empty")));
    }
    if part.len() > MAX_NAME_LEN {
        return Err(bad(format!("the {what} is longer than {MAX_NAME_LEN}")));
    }
    if part.starts_with(['.', '-']) {
        return Err(bad(format!("the {what} starts with {:?}", &part[..1])));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(bad(format!("the {what} contains {c:?}")));
    }
    Ok(())
}

impl Tag {
    /// Parses `NAME[:VERSION]`.
    pub fn parse(tag: &str) -> Result<Self, StoreError> {
        let (name, version) = match tag.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (tag, None),
        };
        check_part(tag, "name", name)?;
        let version = match version {
            None | Some("latest") => None,
            Some(v) => {
                check_part(tag, "version", v)?;
                Some(v.to_string())
            }
        };
        Ok(Self {
            name: name.to_string(),
            version,
        })
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.name,
            self.version.as_deref().unwrap_or("latest")
        )
    }
}

/// Parses `key=value` labels.
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>, StoreError> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(StoreError::BadLabel(l.clone())),
        })
        .collect()
}

/// What `model.json` records about an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The model name.
    pub name: String,
    /// The generated version.
    pub version: String,
    /// The sha256 of the model file, lower-case hex.
    pub sha256: String,
    /// The model file's size in bytes.
    pub size: u64,
    /// When it was imported, RFC 3339 UTC.
    pub created: String,
    /// The model format (`onnx`).
    pub framework: String,
    /// The model's inputs, as read from the file.
    pub inputs: Vec<TensorInfo>,
    /// The model's outputs, as read from the file.
    pub outputs: Vec<TensorInfo>,
    /// The labels given at import.
    pub labels: BTreeMap<String, String>,
    /// The file imported from, as given.
    pub source: String,
}

impl Metadata {
    /// `NAME:VERSION`.
    pub fn tag(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }
}

/// One entry of the store, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its metadata.
    pub metadata: Metadata,
    /// The model file.
    pub model_path: PathBuf,
}

/// A model store rooted at a directory (`$TIFFIN_HOME/models`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The store's directory from the environment (see the module docs).
pub fn default_root() -> Result<PathBuf, StoreError> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var(HOME_ENV)
        .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("tiffin")))
        .or_else(|| var("HOME").map(|h| h.join(".local/share/tiffin")))
        .ok_or(StoreError::NoHome)?;
    Ok(home.join("models"))
}

fn sha256_file(path: &Path) -> Result<(String, u64), StoreError> {
    let mut file = std::fs::File::open(path).map_err(io("cannot open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, size))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (version stamp `YYYYMMDDTHHMMSSZ`, RFC 3339 time) for `now`.
fn stamps(now: SystemTime) -> (String, String) {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let (h, mi, se) = (s / 3600, s % 3600 / 60, s % 60);
    (
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{se:02}Z"),
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}Z"),
    )
}

impl Store {
    /// The store at `root` (created on the first import).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store at [`default_root`].
    pub fn open_default() -> Result<Self, StoreError> {
        Ok(Self::at(default_root()?))
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Copies `file` into the store as a new version of `name`, after
    /// checking that it is a model tiffin can serve.
    pub fn import(
        &self,
        file: &Path,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Entry, StoreError> {
        check_part(name, "name", name)?;
        let info = tiffin_onnx::inspect(file)?;
        let (sha256, size) = sha256_file(file)?;
        let (stamp, created) = stamps(SystemTime::now());
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let base = format!("{stamp}-{}", &sha256[..6]);
        let tmp = dir.join(format!(".import-{}-{base}", std::process::id()));
        std::fs::create_dir_all(&tmp).map_err(io("cannot create", &tmp))?;
        let model_tmp = tmp.join(MODEL_FILE);
        std::fs::copy(file, &model_tmp).map_err(io("cannot copy the model to", &model_tmp))?;
        let mut version = base.clone();
        let mut n = 0;
        let target = loop {
            let target = dir.join(&version);
            if !target.exists() {
                break target;
            }
            n += 1;
            version = format!("{base}.{n}");
        };
        let metadata = Metadata {
            name: name.to_string(),
            version,
            sha256,
            size,
            created,
            framework: "onnx".into(),
            inputs: info.inputs,
            outputs: info.outputs,
            labels,
            source: file.display().to_string(),
        };
        let json = serde_json::to_vec_pretty(&metadata).map_err(|e| StoreError::Io {
            what: "cannot encode the metadata for",
            path: tmp.clone(),
            source: std::io::Error::other(e),
        })?;
        let meta_tmp = tmp.join(METADATA_FILE);
        std::fs::write(&meta_tmp, json).map_err(io("cannot write", &meta_tmp))?;
        std::fs::rename(&tmp, &target).map_err(io("cannot move the entry to", &target))?;
        Ok(Entry {
            model_path: target.join(MODEL_FILE),
            metadata,
        })
    }

    fn versions(&self, name: &str) -> Result<Vec<String>, StoreError> {
        subdirs(&self.root.join(name))
    }

    fn names(&self) -> Result<Vec<String>, StoreError> {
        subdirs(&self.root)
    }

    /// The version a tag names: its own, or the newest for `latest`.
    pub fn resolve(&self, tag: &Tag) -> Result<String, StoreError> {
        let versions = self.versions(&tag.name)?;
        let not_found = |hint: String| StoreError::NotFound {
            tag: tag.to_string(),
            root: self.root.clone(),
            hint,
        };
        if versions.is_empty() {
            let names = self.names()?;
            return Err(not_found(if names.is_empty() {
                "the store is empty; add one with `tiffin models import FILE --name NAME`".into()
            } else {
                format!("models: {}", names.join(", "))
            }));
        }
        match &tag.version {
            None => versions
                .last()
                .cloned()
                .ok_or_else(|| not_found("no versions".into())),
            Some(v) if versions.contains(v) => Ok(v.clone()),
            Some(_) => Err(not_found(format!("versions: {}", versions.join(", ")))),
        }
    }

    /// Reads and checks one entry: metadata that parses and names this
    /// entry, a model file of the recorded size and sha256.
    fn entry(&self, name: &str, version: &str) -> Result<Entry, StoreError> {
        let dir = self.root.join(name).join(version);
        let tag = format!("{name}:{version}");
        let corrupt = |reason: String| StoreError::Corrupt {
            tag: tag.clone(),
            path: dir.clone(),
            reason,
        };
        let meta_path = dir.join(METADATA_FILE);
        let bytes = std::fs::read(&meta_path)
            .map_err(|e| corrupt(format!("cannot read {METADATA_FILE}: {e}")))?;
        let metadata: Metadata = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("{METADATA_FILE} does not parse: {e}")))?;
        if metadata.name != name || metadata.version != version {
            return Err(corrupt(format!(
                "{METADATA_FILE} describes {}, not this entry",
                metadata.tag()
            )));
        }
        let model_path = dir.join(MODEL_FILE);
        let (sha256, size) =
            sha256_file(&model_path).map_err(|e| corrupt(format!("{MODEL_FILE}: {e}")))?;
        if sha256 != metadata.sha256 || size != metadata.size {
            return Err(corrupt(format!(
                "{MODEL_FILE} has sha256 {sha256} ({size} bytes) but was imported with \
                 sha256 {} ({} bytes); delete it and import it again",
                metadata.sha256, metadata.size
            )));
        }
        Ok(Entry {
            metadata,
            model_path,
        })
    }

    /// The entry a tag names, checked.
    pub fn get(&self, tag: &Tag) -> Result<Entry, StoreError> {
        let version = self.resolve(tag)?;
        self.entry(&tag.name, &version)
    }

    /// Every entry, by name then version; a corrupt entry is returned as its error.
    pub fn list(&self) -> Result<Vec<Result<Entry, StoreError>>, StoreError> {
        let mut out = Vec::new();
        for name in self.names()? {
            for version in self.versions(&name)? {
                out.push(self.entry(&name, &version));
            }
        }
        Ok(out)
    }

    /// Every name and version in the store, by name then version, without
    /// reading or checking the entries (cheap enough for a request, as the
    /// Open Inference Protocol's repository index asks).
    pub fn tags(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        for name in self.names()? {
            for version in self.versions(&name)? {
                out.push((name.clone(), version));
            }
        }
        Ok(out)
    }

    /// Removes one version; the tag must name it explicitly.
    pub fn delete(&self, tag: &Tag) -> Result<String, StoreError> {
        let Some(version) = &tag.version else {
            return Err(StoreError::NeedsVersion(format!(
                "delete needs an explicit version: {}:VERSION (see `tiffin models list`)",
                tag.name
            )));
        };
        let version = self.resolve(&Tag {
            name: tag.name.clone(),
            version: Some(version.clone()),
        })?;
        let dir = self.root.join(&tag.name).join(&version);
        std::fs::remove_dir_all(&dir).map_err(io("cannot remove", &dir))?;
        let parent = self.root.join(&tag.name);
        if self.versions(&tag.name)?.is_empty() {
            // Only an empty directory goes; a leftover temporary keeps it.
            let _ = std::fs::remove_dir(&parent);
        }
        Ok(format!("{}:{version}", tag.name))
    }

    /// Copies the model file of a checked entry to `dest`.
    pub fn export(&self, tag: &Tag, dest: &Path) -> Result<Entry, StoreError> {
        let entry = self.get(tag)?;
        std::fs::copy(&entry.model_path, dest).map_err(io("cannot write", dest))?;
        Ok(entry)
    }
}

/// The sorted names of the directories in `dir` (model names in the root,
/// versions in a model's directory), skipping hidden ones (an import in
/// progress is a hidden temporary directory). A missing `dir` has none.
fn subdirs(dir: &Path) -> Result<Vec<String>, StoreError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("cannot list", dir)(e)),
    };
    let mut names: Vec<String> = read
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_and_bad_ones_say_why() {
        assert_eq!(
            Tag::parse("digits:20261202T000000Z-abcdef").unwrap(),
            Tag {
                name: "digits".into(),
                version: Some("20261202T000000Z-abcdef".into())
            }
        );
        assert_eq!(Tag::parse("digits:latest").unwrap().version, None);
        assert_eq!(Tag::parse("digits").unwrap().to_string(), "digits:latest");
        for (tag, why) in [
            ("", "name is empty"),
            ("a:", "version is empty"),
            ("../x", "starts with"),
            ("a/b", "contains '/'"),
            ("a:b:c", "contains ':'"),
        ] {
            let e = Tag::parse(tag).unwrap_err().to_string();
            assert!(e.contains(why), "{tag}: {e}");
        }
        let long = "x".repeat(64);
        assert!(Tag::parse(&long).is_err());
    }

    #[test]
    fn versions_sort_by_time() {
        let (v, t) = stamps(UNIX_EPOCH + std::time::Duration::from_secs(1_796_182_245));
        assert_eq!(t, "2026-12-02T03:30:45Z");
        assert_eq!(v, "20261202T033045Z");
        let (v2, _) = stamps(UNIX_EPOCH + std::time::Duration::from_secs(1_796_182_246));
        assert!(v2 > v);
        assert_eq!(stamps(UNIX_EPOCH).1, "1970-01-01T00:00:00Z");
        let (_, leap) = stamps(UNIX_EPOCH + std::time::Duration::from_secs(951_782_400));
        assert_eq!(leap, "2000-02-29T00:00:00Z");
    }
}
