//! The client of scripts/bench section `stream`: measures Server-Sent Event
//! streams from `POST /generate` (tiffin's `text_generator` or the
//! `bare_stream` reference) over raw HTTP/1.1 keep-alive connections,
//! decoding the chunked body itself so no client library's buffering sits
//! between the wire and the clock. An item is one SSE event (`\n\n`-ended)
//! other than the final `event: end`. Built as the root package's example
//! `stream_client` (Cargo.toml).
//!
//! `stream_client throughput ADDR STREAMS TOKENS SECONDS`: STREAMS
//! connections, each running streams of TOKENS tokens (pace 0) one after
//! another for SECONDS; prints `items_per_s=.. streams=.. errors=..`.
//!
//! `stream_client ttfi ADDR RATE TOKENS PACE_MS SECONDS`: opens a new stream
//! (each on its own connection) RATE times a second for SECONDS, whatever
//! the earlier ones are doing (an open loop), and prints the time from
//! sending the request to the first item, `p50_ms=.. p99_ms=.. streams=..
//! errors=..`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection and the bytes read past the last response.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    request: Vec<u8>,
}

/// What one stream delivered.
struct Streamed {
    items: u64,
    first: Option<Duration>,
}

impl Conn {
    async fn open(addr: &str, tokens: u64, pace_ms: u64) -> std::io::Result<Self> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let body = format!(
            r#"{{"prompt": "The with statement", "max_tokens": {tokens}, "pace_ms": {pace_ms}, "seed": 1}}"#
        );
        let request = format!(
            "POST /generate HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Ok(Self {
            sock,
            buf: Vec::with_capacity(64 * 1024),
            request,
        })
    }

    /// Reads until `buf` holds at least `n` bytes.
    async fn fill(&mut self, n: usize) -> std::io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        while self.buf.len() < n {
            let got = self.sock.read(&mut chunk).await?;
            if got == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    /// Reads up to and including the next `\r\n`, returning the line.
    async fn line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..at].to_vec();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            let need = self.buf.len() + 1;
            self.fill(need).await?;
        }
    }

    /// Sends one request and reads its whole streamed answer.
    async fn stream(&mut self) -> std::io::Result<Streamed> {
        let sent = Instant::now();
        self.sock.write_all(&self.request).await?;
        let status = self.line().await?;
        if !status.starts_with(b"HTTP/1.1 200") {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&status).to_string(),
            ));
        }
        let mut chunked = false;
        loop {
            let header = self.line().await?;
            if header.is_empty() {
                break;
            }
            let lower = header.to_ascii_lowercase();
            chunked |= lower.starts_with(b"transfer-encoding:") && lower.ends_with(b"chunked");
        }
        if !chunked {
            return Err(std::io::Error::other("the answer is not chunked"));
        }
        let mut events = 0u64;
        let mut first = None;
        let mut last_byte = 0u8;
        let mut ended = false;
        loop {
            let size_line = self.line().await?;
            let size = std::str::from_utf8(&size_line)
                .ok()
                .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| std::io::Error::other("a bad chunk size"))?;
            self.fill(size + 2).await?;
            if size == 0 {
                self.buf.drain(..2);
                break;
            }
            for &b in &self.buf[..size] {
                if b == b'\n' && last_byte == b'\n' {
                    events += 1;
                    if first.is_none() {
                        first = Some(sent.elapsed());
                    }
                }
                last_byte = b;
            }
            ended |= self.buf[..size].windows(10).any(|w| w == b"event: end");
            self.buf.drain(..size + 2);
        }
        if !ended {
            return Err(std::io::Error::other(
                "the stream did not end with event: end",
            ));
        }
        Ok(Streamed {
            items: events.saturating_sub(1),
            first,
        })
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("stream_client: argument {i} ({what}) missing or bad; see the file's docs");
        std::process::exit(2)
    })
}

async fn throughput(addr: String, streams: usize, tokens: u64, seconds: f64) {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let (mut items, mut done, mut errors) = (0u64, 0u64, 0u64);
            let mut conn = None;
            while Instant::now() < until {
                if conn.is_none() {
                    conn = Conn::open(&addr, tokens, 0).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    // Nothing listens: counted, not retried in a busy loop.
                    errors += 1;
                    break;
                };
                match c.stream().await {
                    Ok(s) => {
                        items += s.items;
                        done += 1;
                    }
                    Err(_) => {
                        errors += 1;
                        conn = None;
                    }
                }
            }
            (items, done, errors)
        }));
    }
    let (mut items, mut done, mut errors) = (0, 0, 0);
    for t in tasks {
        if let Ok((i, d, e)) = t.await {
            items += i;
            done += d;
            errors += e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "items_per_s={:.0} streams={done} errors={errors}",
        items as f64 / secs
    );
}

async fn ttfi(addr: String, rate: f64, tokens: u64, pace_ms: u64, seconds: f64) {
    let n = (rate * seconds).round() as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + period * i as u32).await;
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr, tokens, pace_ms).await.ok()?;
            let s = c.stream().await.ok()?;
            s.first.filter(|_| s.items == tokens)
        }));
    }
    let mut firsts = Vec::with_capacity(n);
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Some(first)) => firsts.push(first.as_secs_f64() * 1000.0),
            _ => errors += 1,
        }
    }
    firsts.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if firsts.is_empty() {
            return f64::NAN;
        }
        let at = ((p * firsts.len() as f64).ceil() as usize).clamp(1, firsts.len()) - 1;
        firsts[at]
    };
    println!(
        "p50_ms={:.3} p99_ms={:.3} streams={} errors={errors}",
        pct(0.50),
        pct(0.99),
        firsts.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let addr: String = arg(&args, 2, "ADDR");
    match mode {
        "throughput" => {
            throughput(
                addr,
                arg(&args, 3, "STREAMS"),
                arg(&args, 4, "TOKENS"),
                arg(&args, 5, "SECONDS"),
            )
            .await
        }
        "ttfi" => {
            ttfi(
                addr,
                arg(&args, 3, "RATE"),
                arg(&args, 4, "TOKENS"),
                arg(&args, 5, "PACE_MS"),
                arg(&args, 6, "SECONDS"),
            )
            .await
        }
        _ => {
            eprintln!("stream_client: throughput|ttfi ...; see the file's docs");
            std::process::exit(2)
        }
    }
}
