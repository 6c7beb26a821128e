//! Training runs through the binary: a resume continues its own run with its own settings, an
//! interrupt saves and exits non-zero, data too small for one window is refused.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SMALL: [&str; 10] =
    ["--seq", "16", "--batch", "2", "--dashboard", "quiet", "--task-examples", "0", "--cache-dir", "cache"];

fn tritter(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tritter")).current_dir(dir).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_resume_alone_continues_its_run_in_its_directory_and_refuses_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut first =
        vec!["train", "--steps", "6", "--checkpoint-every", "3", "--lr", "0.02", "--warmup", "2", "--out", "run"];
    first.extend(SMALL);
    let out = tritter(dir.path(), &first);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = tritter(
        dir.path(),
        &["train", "--resume", "run", "--steps", "9", "--dashboard", "quiet", "--cache-dir", "cache"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("resumed at step 6"), "{stdout}");
    assert!(stderr.contains("steps 6 → 9"), "the change is not reported: {stderr}");
    assert!(!dir.path().join("runs").exists(), "the resume wrote into the default run directory");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/train_config.json")).unwrap()).unwrap();
    assert_eq!((saved["learning_rate"].as_f64(), saved["warmup_steps"].as_u64()), (Some(0.02), Some(2)));
    assert_eq!((saved["steps"].as_u64(), saved["seq_len"].as_u64()), (Some(9), Some(16)));

    for (flag, value, named) in [
        ("--lr", "0.1", "--lr"),
        ("--seq", "8", "--seq"),
        ("--preset", "small_100m", "hidden_size"),
        ("--out", "elsewhere", "--out"),
    ] {
        let out = tritter(dir.path(), &["train", "--resume", "run", "--steps", "12", flag, value]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {stderr}");
        assert!(stderr.contains(named), "{flag}: {stderr}");
    }
}

#[test]
fn data_that_cannot_fill_one_window_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.jsonl"), "{\"text\": \"\"}\n").unwrap();
    let mut args = vec!["train", "--data", "empty.jsonl", "--steps", "3", "--out", "run"];
    args.extend(SMALL);
    let out = tritter(dir.path(), &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fewer than one window of seq_len + 1 = 17"), "{stderr}");
}

/// SIGINT mid-run: the run stops after its step, saves a checkpoint there, prints how to
/// resume and exits 130; SIGTERM the same with 143.
#[cfg(unix)]
#[test]
fn an_interrupted_run_saves_a_checkpoint_and_exits_non_zero() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["train", "--steps", "1000000", "--checkpoint-every", "5", "--out", "run"];
        args.extend(SMALL);
        let child = Command::new(env!("CARGO_BIN_EXE_tritter"))
            .current_dir(dir.path())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let latest = dir.path().join("run/checkpoints/latest");
        let started = Instant::now();
        while !latest.exists() {
            assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint after 300 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: signals a child process this test started and has not yet waited for.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{stdout}{}", text(&out.stderr));
        let step: usize =
            stdout.split("Interrupted at step ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        let name = std::fs::read_to_string(&latest).unwrap();
        assert_eq!(name, format!("step-{step:08}"), "the interrupted step has no checkpoint");
        assert!(stdout.contains("tritter train --resume run"), "{stdout}");
        assert!(!dir.path().join("run/model").exists(), "an interrupted run wrote a final model");
    }
}
