//! The `tiffin` binary: the CLI with the built-in services.

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc, in every process of the binary (the
/// supervisor, API servers and runner workers are all this executable).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its first allocation: freed pages go back to
/// the system at once (no decay delay), so a burst's memory is returned when
/// it ends and its buffers do not stay resident while it lasts. With glibc's
/// malloc an API server kept most of a burst (per-thread arenas are not
/// trimmed, and the mmap threshold grows after a large free). Figures:
/// README.md, Benchmarks (`SECTIONS=memory scripts/bench`).
// SAFETY: jemalloc reads `_rjem_malloc_conf` as a `const char *` to a
// NUL-terminated string; this is a thin pointer to the first byte of a
// static NUL-terminated string, and nothing else defines the symbol.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"dirty_decay_ms:0,muzzy_decay_ms:0\0"[0];

fn main() -> ExitCode {
    tiffin::main_with(tiffin::services::builtin())
}
