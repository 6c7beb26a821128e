//! Output into a pipe that closes early (`tritter ... | head`) ends the command quietly.

use std::io::Read;
use std::process::{Command, Stdio};

/// A command whose output is larger than a pipe's buffer, read for a few bytes and then closed:
/// the process must end without a panic (exit 101) or a panic message.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    // 96 KB of text (one argument may hold 128 KB): ~400 KB of ids as JSON, over a pipe buffer.
    let text = "ternary ".repeat(12_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tritter"))
        .args(["tokenizer", "encode", "--text", &text])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is closed here (dropped), while the command still has most to write.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(first.starts_with(b"{\"ids\":["), "{:?}", String::from_utf8_lossy(&first));
}
