//! `tiffin models ...` (the model store, `tiffin_models`) and the zero-code
//! `serve-http --model NAME[:VERSION]|PATH.onnx` (`tiffin_onnx::serve`).
//!
//! How a worker learns which model it serves: the supervisor resolves the
//! `--model` argument once (a store tag is looked up and its file's sha256
//! checked; a path is read) into a [`ModelService`], and hands its absolute
//! file to every worker on the worker's command line
//! (`tiffin_supervisor::spawn::WorkerCommon::model`) beside the service
//! name. Each worker rebuilds the same service from the same file
//! ([`worker_service`]), just as a built-in service is rebuilt from its name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use tiffin_models::{Store, Tag, parse_labels};
use tiffin_service::Service;

/// `tiffin models ...`: the model store under `$TIFFIN_HOME/models`.
#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Copy an ONNX file into the store as a new version of NAME.
    Import {
        /// The model file.
        file: PathBuf,
        /// The model's name (A-Z a-z 0-9 _ . -, at most 63).
        #[arg(long)]
        name: String,
        /// A label to record, key=value (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// List every model and version.
    List {
        /// Print JSON (one object per entry) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one entry's metadata (NAME means NAME:latest).
    Get {
        /// NAME or NAME:VERSION.
        tag: String,
    },
    /// Remove one version (NAME:VERSION).
    Delete {
        /// NAME:VERSION.
        tag: String,
    },
    /// Copy one entry's model file out of the store.
    Export {
        /// NAME or NAME:VERSION.
        tag: String,
        /// Where to write it.
        file: PathBuf,
    },
}

/// Runs a `tiffin models` command.
pub fn run(command: ModelsCommand) -> Result<()> {
    let store = Store::open_default()?;
    match command {
        ModelsCommand::Import { file, name, labels } => {
            let labels = parse_labels(&labels)?;
            let entry = store.import(&file, &name, labels)?;
            println!("{}", entry.metadata.tag());
        }
        ModelsCommand::List { json } => {
            let entries = store.list()?;
            if json {
                let rows: Vec<serde_json::Value> = entries
                    .iter()
                    .map(|e| match e {
                        Ok(e) => serde_json::to_value(&e.metadata).unwrap_or_default(),
                        Err(err) => serde_json::json!({ "error": err.to_string() }),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24} {:<26} {:>10} {:<20} SHA256",
                    "NAME", "VERSION", "SIZE", "CREATED"
                );
                for e in &entries {
                    match e {
                        Ok(e) => {
                            let m = &e.metadata;
                            println!(
                                "{:<24} {:<26} {:>10} {:<20} {}",
                                m.name,
                                m.version,
                                m.size,
                                m.created,
                                &m.sha256[..12.min(m.sha256.len())]
                            );
                        }
                        Err(err) => eprintln!("tiffin: warning: {err}"),
                    }
                }
            }
        }
        ModelsCommand::Get { tag } => {
            let entry = store.get(&Tag::parse(&tag)?)?;
            println!("{}", serde_json::to_string_pretty(&entry.metadata)?);
        }
        ModelsCommand::Delete { tag } => {
            let deleted = store.delete(&Tag::parse(&tag)?)?;
            println!("deleted {deleted}");
        }
        ModelsCommand::Export { tag, file } => {
            let entry = store.export(&Tag::parse(&tag)?, &file)?;
            println!("{} -> {}", entry.metadata.tag(), file.display());
        }
    }
    Ok(())
}

/// `--model` names a file when it has a `/`, ends in `.onnx` or exists;
/// otherwise it is a store tag. Returns (service name, model file).
fn resolve(spec: &str) -> Result<(String, PathBuf)> {
    let path = Path::new(spec);
    if spec.contains('/') || spec.ends_with(".onnx") || path.is_file() {
        return Ok((tiffin_onnx::serve::name_for(path), path.to_path_buf()));
    }
    let tag = Tag::parse(spec)?;
    let entry = Store::open_default()?.get(&tag)?;
    Ok((entry.metadata.name, entry.model_path))
}

/// The version a model file is served as: its store version when it is a
/// store entry's file (`<name>/<version>/model.onnx` beside its metadata),
/// else `1`. The supervisor and every worker derive it from the same
/// absolute path, so they cannot disagree.
pub fn version_of(path: &Path) -> String {
    let entry = path.parent().filter(|dir| {
        path.file_name()
            .is_some_and(|f| f == tiffin_models::MODEL_FILE)
            && dir.join(tiffin_models::METADATA_FILE).is_file()
    });
    entry
        .and_then(|dir| dir.file_name())
        .map_or_else(|| "1".to_string(), |v| v.to_string_lossy().into_owned())
}

/// The model store as the Open Inference Protocol's repository index lists
/// it: every name and version under `$TIFFIN_HOME/models`, read anew for
/// each request (an empty list when there is no store).
pub fn store_index() -> tiffin_oip::metadata::ModelIndex {
    tiffin_oip::metadata::ModelIndex::new(|| {
        Store::open_default()
            .and_then(|store| store.tags())
            .map_err(|e| e.to_string())
    })
}

/// The service of `serve-http --model SPEC` and the file it was built from.
pub struct ModelService {
    /// The service, named after the model.
    pub service: Service,
    /// The model file, absolute, which every worker is handed.
    pub path: PathBuf,
}

/// Resolves `serve-http --model SPEC` (see the module docs).
pub fn service_for(spec: &str) -> Result<ModelService> {
    let (name, path) = resolve(spec)?;
    let path = std::path::absolute(&path)
        .with_context(|| format!("cannot resolve the model path {}", path.display()))?;
    let (service, _) = tiffin_onnx::serve::service(&name, &version_of(&path), &path)?;
    Ok(ModelService { service, path })
}

/// The service `name` of a worker its supervisor handed the model file
/// `path` (`WorkerCommon::model`).
pub fn worker_service(name: &str, path: &Path) -> Result<Service> {
    let (service, _) = tiffin_onnx::serve::service(name, &version_of(path), path)
        .map_err(|e| anyhow!("the model this worker serves: {e}"))?;
    Ok(service)
}
