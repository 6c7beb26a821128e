//! Writes a benchmark's section of `BENCHMARKS.md` (between `<!-- NAME -->` markers), with the
//! machine and the command, so the results file always holds the latest run of each benchmark.

use std::path::Path;

/// CPU model and core count of this machine.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cpu}, {cores} cores")
}

/// Replaces (or appends) the section `name` of `BENCHMARKS.md` at the crate root.
pub fn record(name: &str, body: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmark results\n\nWritten by `cargo bench`; each section is replaced by the latest run of its benchmark.\n".into());
    let (start, end) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if b > a => text.replace_range(a..b + end.len(), &section),
        _ => text = format!("{}\n{section}\n", text.trim_end()),
    }
    // Printed too: on a lent machine the source tree (and so BENCHMARKS.md) may not be there.
    println!("\n{section}");
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

/// Median seconds per call of `f` over `runs` calls, after one warm-up call.
#[allow(dead_code)] // not every bench times this way
pub fn median_seconds(mut f: impl FnMut(), runs: usize) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[runs / 2]
}
