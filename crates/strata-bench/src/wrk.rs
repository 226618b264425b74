//! Run `wrk` and read its requests per second and 99th percentile latency.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    pub requests_per_s: f64,
    pub p99_s: f64,
}

/// "1.23ms" → seconds.
fn parse_duration(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    Some(v * scale)
}

fn parse(out: &str) -> Option<WrkResult> {
    let rps = out
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let p99 = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("99%"))?
        .split_whitespace()
        .nth(1)
        .and_then(parse_duration)?;
    Some(WrkResult {
        requests_per_s: rps,
        p99_s: p99,
    })
}

/// Run wrk against `url` with an Accept header.
pub fn run(url: &str, accept: &str, connections: u32, seconds: u32) -> Result<WrkResult> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .args(["-H", &format!("Accept: {accept}")])
        .arg(url)
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("Non-2xx") {
        bail!("wrk failed or saw errors: {text}");
    }
    parse(&text).with_context(|| format!("cannot read wrk output: {text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 5s test\n  Latency Distribution\n     50%  200.00us\n     99%    1.50ms\n  1000 requests in 5.00s\nRequests/sec:  12345.67\nTransfer/sec: 1MB\n";
        let r = parse(out).expect("parses");
        assert!((r.requests_per_s - 12345.67).abs() < 1e-6);
        assert!((r.p99_s - 0.0015).abs() < 1e-12);
        assert_eq!(parse_duration("2.5s"), Some(2.5));
        assert!(parse("garbage").is_none());
    }
}
