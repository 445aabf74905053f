//! Who a process is: an API server, a runner worker, or a command-line
//! client. A [`Role`] names a supervisor's slot, labels the supervisor's own
//! metrics, tags every log line, and identifies a process when snapshots are
//! merged; each of those spellings is derived here and nowhere else.

use std::fmt;

use serde::{Deserialize, Serialize};
use tiffin_metrics::WorkerId;

/// Who a control connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// An API-server process with its 0-based index.
    ApiServer {
        /// Index among API servers, 0-based.
        index: usize,
    },
    /// A runner worker process: runner name and 1-based worker index.
    Runner {
        /// Name of the runner it serves.
        name: String,
        /// Worker index, 1-based like BentoML's `worker_index` label.
        index: usize,
    },
    /// A command-line client (`tiffin status`, `tiffin scale`).
    Cli,
}

/// The scale target and status spelling of the API servers (`tiffin scale api-server 2`).
pub const API_SERVER_TARGET: &str = "api-server";

/// Every spelling `tiffin scale` takes for the API servers (the CLI's and the label's).
pub const API_SERVER_TARGET_ALIASES: [&str; 2] = [API_SERVER_TARGET, "api_server"];

impl Role {
    /// The `role` label of the supervisor's metrics and of merged snapshots:
    /// `api_server`, `runner` or `cli`.
    pub fn label(&self) -> &'static str {
        match self {
            Role::ApiServer { .. } => "api_server",
            Role::Runner { .. } => "runner",
            Role::Cli => "cli",
        }
    }

    /// The role as the command line shows and takes it: `api-server`,
    /// `runner` or `cli`.
    pub fn cli_name(&self) -> &'static str {
        match self {
            Role::ApiServer { .. } => API_SERVER_TARGET,
            Role::Runner { .. } => "runner",
            Role::Cli => "cli",
        }
    }

    /// The runner's name, for runner workers.
    pub fn runner(&self) -> Option<&str> {
        match self {
            Role::Runner { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The index within its role (0-based for API servers, 1-based for
    /// runner workers, 0 for the CLI).
    pub fn index(&self) -> usize {
        match self {
            Role::ApiServer { index } | Role::Runner { index, .. } => *index,
            Role::Cli => 0,
        }
    }

    /// The identity under which this process's snapshot is merged.
    pub fn worker_id(&self) -> WorkerId {
        WorkerId {
            role: self.label().to_owned(),
            runner: self.runner().map(str::to_owned),
            index: self.index(),
        }
    }
}

/// `api_server:0`, `runner:nltk_sentiment:2` or `cli`: how logs name a process.
impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::ApiServer { index } => write!(f, "{}:{index}", self.label()),
            Role::Runner { name, index } => write!(f, "{}:{name}:{index}", self.label()),
            Role::Cli => f.write_str(self.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_role_comes_from_one_place() {
        let api = Role::ApiServer { index: 0 };
        let runner = Role::Runner {
            name: "clf".into(),
            index: 2,
        };
        assert_eq!(api.to_string(), "api_server:0");
        assert_eq!(runner.to_string(), "runner:clf:2");
        assert_eq!(Role::Cli.to_string(), "cli");
        assert_eq!((api.label(), api.cli_name()), ("api_server", "api-server"));
        assert_eq!(runner.runner(), Some("clf"));
        let id = runner.worker_id();
        assert_eq!(
            (id.role.as_str(), id.runner.as_deref(), id.index),
            ("runner", Some("clf"), 2)
        );
    }
}
