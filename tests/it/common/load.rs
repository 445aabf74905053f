//! Many clients at once: the contracts that matter under concurrency (exact
//! counts, batching, every API server serving) need several callers in
//! flight together. Scoped threads borrow the test's `Server`, so a panic in
//! any client fails the test and the server is still stopped on the way out.

/// Runs `clients` threads at once, each calling `request(client, i)` for
/// `i` in `0..requests`; a panic in any of them fails the caller.
pub fn concurrent_clients(clients: usize, requests: usize, request: impl Fn(usize, usize) + Sync) {
    std::thread::scope(|s| {
        for c in 0..clients {
            let request = &request;
            s.spawn(move || (0..requests).for_each(|i| request(c, i)));
        }
    });
}
