//! AFL++ target `config`: see [`tiffin_fuzz::config`] for what it checks.

#[global_allocator]
static ALLOC: tiffin_fuzz::CappedAlloc = tiffin_fuzz::CappedAlloc;

fn main() {
    afl::fuzz!(|data: &[u8]| tiffin_fuzz::config(data));
}
