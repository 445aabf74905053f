//! The `tiffin` binary: the CLI with the built-in services.

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc, in every process of the binary (the
/// supervisor, API servers and runner workers are all this executable).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its first allocation: freed pages go back to
/// the system within about 100 ms (`dirty_decay_ms:100`), purged by
/// jemalloc's background thread even when the process is idle, so a burst's
/// memory is returned when it ends. With glibc's malloc an API server kept
/// most of a burst (per-thread arenas are not trimmed, and the mmap
/// threshold grows after a large free). A decay of 0 returned pages at once
/// but made requests fault their buffers back in: about 0.4 page faults a
/// request on `echo` under wrk, 8-10% of its throughput; 100 ms keeps the
/// pages a busy server reuses and costs a higher peak only during a burst
/// of huge bodies. Figures: README.md, Benchmarks (`SECTIONS=memory`, `cost`).
// SAFETY: jemalloc reads `_rjem_malloc_conf` as a `const char *` to a
// NUL-terminated string; this is a thin pointer to the first byte of a
// static NUL-terminated string, and nothing else defines the symbol.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0\0"[0];

fn main() -> ExitCode {
    tiffin::main_with(tiffin_builtins::builtin())
}
