//! Training runs through the binary: a resume continues its own run with its own settings, an
//! interrupt saves and exits non-zero, data too small for one window is refused.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SMALL: [&str; 12] = [
    "--preset",
    "test",
    "--seq",
    "16",
    "--batch",
    "2",
    "--dashboard",
    "quiet",
    "--task-examples",
    "0",
    "--cache-dir",
    "cache",
];

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
    let summary = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap()).unwrap()
    };
    let first_summary = summary();
    assert_eq!((first_summary["step"].as_u64(), first_summary["tokens"].as_u64()), (Some(6), Some(6 * 2 * 16)));
    assert!(first_summary["final_train_loss"].as_f64().is_some_and(f64::is_finite), "{first_summary}");
    assert!(first_summary["model"].as_str().is_some_and(|m| m.ends_with("model")), "{first_summary}");

    let out = tritter(
        dir.path(),
        &["train", "--resume", "run", "--steps", "9", "--dashboard", "quiet", "--cache-dir", "cache"],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("resumed at step 6"), "{stdout}");
    assert!(stderr.contains("steps 6 → 9"), "the change is not reported: {stderr}");
    assert_eq!((summary()["resumed_from"].as_u64(), summary()["step"].as_u64()), (Some(6), Some(9)));
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

/// Spawns a long run and waits for its first checkpoint.
#[cfg(unix)]
fn running(dir: &Path) -> std::process::Child {
    let mut args = vec!["train", "--steps", "1000000", "--checkpoint-every", "2", "--out", "run"];
    args.extend(SMALL);
    let child = Command::new(env!("CARGO_BIN_EXE_tritter"))
        .current_dir(dir)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.join("run/checkpoints/latest").exists() {
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A second SIGINT while the first one's checkpoint is being saved ends the process at once,
/// and the latest checkpoint still loads. The second is sent once the first is acknowledged:
/// two signals sent before the process reads either arrive as one.
#[cfg(unix)]
#[test]
fn a_second_interrupt_stops_at_once() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = running(dir.path());
    let (lines, received) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        stderr.lines().map_while(Result::ok).inspect(|line| drop(lines.send(line.clone()))).collect::<Vec<_>>()
    });
    // SAFETY: signals a child this test started and has not waited for yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    while !received.recv_timeout(Duration::from_secs(60)).unwrap().contains("stopping after this step") {
        assert!(started.elapsed() < Duration::from_secs(60), "the first SIGINT is not acknowledged");
    }
    // SAFETY: as above; the child is still saving, so it has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap().join("\n");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("Stopped at once"), "{stderr}");
    let latest = tritter::train::resolve_run_checkpoint(&dir.path().join("run")).unwrap();
    tritter::TritterModel::<burn::backend::NdArray>::load_checkpoint(latest.join("model"), &Default::default())
        .unwrap();
}

/// A checkpoint that cannot be written (here: the file-size limit, as a full disk would) ends
/// the run with the OS's reason, and leaves no partial checkpoint behind.
#[cfg(unix)]
#[test]
fn a_failed_checkpoint_write_reports_the_os_error_and_leaves_nothing() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let mut warm = vec!["train", "--steps", "1", "--out", "warm"]; // tokenizes into the cache
    warm.extend(SMALL);
    assert!(tritter(dir.path(), &warm).status.success());
    let mut args = vec!["train", "--steps", "4", "--checkpoint-every", "1", "--out", "run"];
    args.extend(SMALL);
    let mut command = Command::new(env!("CARGO_BIN_EXE_tritter"));
    command.current_dir(dir.path()).args(&args);
    // SAFETY: only async-signal-safe calls between fork and exec. 256 KiB is below the test
    // model's weights file (~0.5 MB); SIGXFSZ ignored, so a write past it fails with EFBIG.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 256 << 10, rlim_max: 256 << 10 };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        })
    };
    let out = command.output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("File too large"), "the OS error is not reported: {stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("run/checkpoints"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a failed save left {left:?}");
}

/// A run directory given as --model loads its newest weights (here a checkpoint written after
/// `model/`, as a crashed resume leaves it) and says which.
#[test]
fn a_run_directory_as_model_loads_its_newest_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--steps", "2", "--checkpoint-every", "1", "--out", "run"];
    args.extend(SMALL);
    assert!(tritter(dir.path(), &args).status.success());
    let step1 = dir.path().join("run/checkpoints/step-00000001");
    std::fs::write(dir.path().join("run/checkpoints/latest"), "step-00000001").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let weights = step1.join("model/model.safetensors");
    std::fs::write(&weights, std::fs::read(&weights).unwrap()).unwrap(); // written after model/
    let logits = |model: &str| {
        let out = tritter(dir.path(), &["logits", "--model", model, "--ids", "1,2,3"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let (from_run, said) = logits("run");
    assert!(said.contains("step-00000001"), "which weights were loaded is not said: {said}");
    assert_eq!(from_run, logits("run/checkpoints/step-00000001/model").0);
    assert_ne!(from_run, logits("run/model").0);
}

/// A run stopped between its last checkpoint and its final model: the resume writes the model
/// from that checkpoint; resuming again is refused (the run is finished).
#[test]
fn resuming_a_finished_run_writes_its_missing_model_then_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--steps", "2", "--out", "run"];
    args.extend(SMALL);
    assert!(tritter(dir.path(), &args).status.success());
    let model = dir.path().join("run/model");
    let tensors = |dir: &Path| {
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<(String, Vec<u8>)> =
            file.tensors().into_iter().map(|(n, v)| (n, v.data().to_vec())).collect();
        tensors.sort();
        tensors
    };
    let expected = tensors(&model);
    std::fs::remove_dir_all(&model).unwrap();
    let resume = ["train", "--resume", "run", "--dashboard", "quiet", "--cache-dir", "cache"];
    let out = tritter(dir.path(), &resume);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(tensors(&model) == expected, "the written model is not the last checkpoint's");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["step"].as_u64(), Some(2));
    let out = tritter(dir.path(), &resume);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("finished"), "{}", text(&out.stderr));
}

/// summary.json holds every evaluation (step, seconds, loss), and `eval --data` reports bits
/// per byte: the loss per token in bits times the tokens per byte of text (the byte tokenizer:
/// one token per byte plus the document's EOS), and no generated tasks unless asked.
#[test]
fn the_summary_has_the_validation_curve_and_eval_reports_bits_per_byte() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--steps", "4", "--eval-every", "2", "--out", "run"];
    args.extend(SMALL);
    let out = tritter(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/summary.json")).unwrap()).unwrap();
    let curve = summary["validation"].as_array().unwrap();
    let steps: Vec<u64> = curve.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [2, 4]);
    let seconds: Vec<f64> = curve.iter().map(|v| v["seconds"].as_f64().unwrap()).collect();
    assert!(seconds[0] > 0.0 && seconds[1] > seconds[0], "{seconds:?}");
    assert_eq!(curve[1]["loss"].as_f64(), summary["final_validation_loss"].as_f64());

    let mut rng = rand::rng();
    let bytes = rng.random_range(200..400);
    let body: String = (0..bytes).map(|_| rng.random_range(b'a'..=b'z') as char).collect();
    std::fs::write(dir.path().join("held-out.txt"), &body).unwrap();
    let out = tritter(dir.path(), &["eval", "--model", "run", "--data", "held-out.txt", "--seq", "16"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let number = |after: &str| -> f64 {
        let rest = &stdout[stdout.find(after).unwrap_or_else(|| panic!("no `{after}` in {stdout}")) + after.len()..];
        rest.split([',', ' ']).find(|s| !s.is_empty()).unwrap().parse().unwrap()
    };
    let (loss, bits) = (number("loss "), stdout.split(" bits per byte").next().unwrap());
    let bits: f64 = bits.rsplit(' ').next().unwrap().parse().unwrap();
    let expected = loss / std::f64::consts::LN_2 * (bytes + 1) as f64 / bytes as f64;
    assert!((bits - expected).abs() < 2e-3, "{bits} bits per byte, expected {expected}: {stdout}");
    assert!(!stdout.contains("generated tasks"), "tasks scored without being asked: {stdout}");
}

/// `--init` without a model config: the tokenizer is checked against the model it loads (here
/// 256 ids, fewer than the byte tokenizer's 260) before any data is prepared.
#[test]
fn an_init_model_too_small_for_the_tokenizer_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = tritter::TritterConfig { vocab_size: 256, ..tritter::TritterConfig::test() };
    let model = tritter::TritterModel::<tritter::backend::Cpu>::new(&config, &Default::default()).unwrap();
    model.save_checkpoint(dir.path().join("init")).unwrap();
    let out = tritter(dir.path(), &["train", "--init", "init", "--steps", "1", "--out", "run", "--dashboard", "quiet"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("256") && stderr.contains("260"), "{stderr}");
    assert!(!dir.path().join("runs/cache").exists(), "data was prepared before the refusal");
}

/// `--devices 2` trains (CPU workers) or, where the backend has no second device (wgpu on
/// lavapipe has no discrete GPU), says which device is missing; it never panics.
#[test]
fn two_devices_train_or_name_the_missing_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["train", "--steps", "2", "--devices", "2", "--out", "run"];
    args.extend(SMALL);
    let out = tritter(dir.path(), &args);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    if out.status.success() {
        assert!(stderr.contains("2 devices data-parallel"), "{stderr}");
        assert!(dir.path().join("run/model").exists());
    } else {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("`devices`") && stderr.contains(" device "), "{stderr}");
    }
}

/// A run over machines needs all four settings (clap names the missing one) and checks them
/// before it trains (the library names the bad field); an orchestrator whose port is taken says so.
#[test]
fn node_settings_are_checked_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = tritter(dir.path(), &["train", "--nodes", "2", "--out", "run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--node-rank"), "{}", text(&out.stderr));
    let nodes = ["--nodes", "2", "--orchestrator", "ws://127.0.0.1:9", "--node-address", "ws://127.0.0.1:9"];
    let mut args = vec!["train", "--steps", "2", "--out", "run", "--node-rank", "2"];
    args.extend(nodes);
    let out = tritter(dir.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("`node_rank`"), "{}", text(&out.stderr));
    assert!(!dir.path().join("run/checkpoints").exists());
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = tritter(dir.path(), &["orchestrator", "--port", &port]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("cannot listen on port {port}")), "{}", text(&out.stderr));
}
