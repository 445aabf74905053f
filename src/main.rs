//! The `tiffin` binary: the CLI with the built-in services.

use std::process::ExitCode;

fn main() -> ExitCode {
    tiffin::main_with(tiffin::services::builtin())
}
