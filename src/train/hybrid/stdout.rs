//! The crate prints its phase transitions with `println!`; the library never prints, so they
//! are captured and routed to `tracing`.

use std::io::{Read, Write};

/// Runs `f` with the process's stdout captured; lines the crate prints ("Phase transition: …")
/// go to `tracing::debug!`, anything else is written back to stdout unchanged.
pub(super) fn with_stdout_routed<T>(f: impl FnOnce() -> T) -> T {
    let Ok(mut redirect) = gag::BufferRedirect::stdout() else {
        return f();
    };
    let result = f();
    let _ = std::io::stdout().flush();
    let mut captured = Vec::new();
    let _ = redirect.read_to_end(&mut captured);
    drop(redirect);
    if !captured.is_empty() {
        let text = String::from_utf8_lossy(&captured);
        let mut passthrough = String::new();
        for line in text.split_inclusive('\n') {
            if line.starts_with("Phase transition") {
                tracing::debug!(target: "tritter::hybrid", "{}", line.trim_end());
            } else {
                passthrough.push_str(line);
            }
        }
        if !passthrough.is_empty() {
            let mut out = std::io::stdout();
            let _ = out.write_all(passthrough.as_bytes());
            let _ = out.flush();
        }
    }
    result
}
