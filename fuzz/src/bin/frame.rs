//! AFL++ target `frame`: see [`tiffin_fuzz::frame`] for what it checks.

#[global_allocator]
static ALLOC: tiffin_fuzz::CappedAlloc = tiffin_fuzz::CappedAlloc;

fn main() {
    afl::fuzz!(|data: &[u8]| tiffin_fuzz::frame(data));
}
