//! Fault injection: `tritter train` killed at random moments (SIGKILL at seeded times; with a
//! checkpoint every step many kills land while one is being written) and resumed until it ends,
//! at least ten times; then the same with SIGINT, which must stop cleanly with a checkpoint of
//! the step it stopped at. Each time the latest checkpoint must load and never go back, and the
//! finished run must reach the uninterrupted run's final loss and weights (`bitnet = false`, so
//! they agree to float rounding, see docs/training.md#how-exact-is-exact-resume).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};
use tritter::train::optimizer::TritterAdamWRecord;
use tritter::train::{load_run_checkpoint, resolve_run_checkpoint};

type AD = burn::backend::Autodiff<burn::backend::NdArray<f32>>;

const STEPS: usize = 16;
const KILLS: usize = 10;
const INTERRUPTS: usize = 3;

/// A fresh run of the test model (`bitnet = false`) with a checkpoint every step.
fn fresh_args(out: &str) -> Vec<String> {
    let args = format!(
        "train --model-config model.json --steps {STEPS} --checkpoint-every 1 --seq 16 --batch 2 \
         --dashboard quiet --task-examples 0 --cache-dir cache --overwrite --out {out}"
    );
    args.split(' ').map(String::from).collect()
}

fn resume_args(out: &str) -> Vec<String> {
    ["train", "--resume", out, "--dashboard", "quiet", "--cache-dir", "cache"].map(String::from).to_vec()
}

fn spawn(dir: &Path, args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tritter"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The latest checkpoint's step and last loss, after checking that it loads whole.
fn latest(run: &Path) -> Option<(usize, f32)> {
    if !run.join("checkpoints/latest").exists() {
        return None;
    }
    let dir = resolve_run_checkpoint(run).unwrap_or_else(|e| panic!("the latest checkpoint is lost: {e}"));
    let checkpoint = load_run_checkpoint::<AD, TritterAdamWRecord<AD>>(&dir, &Default::default())
        .unwrap_or_else(|e| panic!("the latest checkpoint {} does not load: {e}", dir.display()));
    Some((checkpoint.state.step, checkpoint.state.last_loss))
}

/// Every weight of a model directory, in file order by name.
fn weights(model: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(model.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<f32>)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    tensors
}

/// The finished run agrees with the uninterrupted one: its last loss to 1e-5 and every weight to
/// 1e-3, a tenth of one step's update (lr 1e-2): AdamW divides by √v, so the backward pass's
/// rounding noise moves a weight whose gradient is near zero by up to a fraction of lr, while a
/// lost optimizer state, schedule or data position moves weights by whole updates.
fn assert_same_result(run: &Path, reference: &Path, what: &str) {
    let (step, loss) = latest(run).unwrap();
    let (ref_step, ref_loss) = latest(reference).unwrap();
    assert_eq!(step, ref_step, "{what}");
    assert!((loss - ref_loss).abs() <= 1e-5 * ref_loss.abs(), "{what}: final loss {loss}, uninterrupted {ref_loss}");
    for ((name, a), (ref_name, b)) in weights(&run.join("model")).iter().zip(weights(&reference.join("model"))) {
        assert_eq!(name, &ref_name);
        let worst = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(worst <= 1e-3, "{what}: `{name}` differs by {worst}");
    }
}

/// Waits for `child`, at most five minutes (a hung process fails the test instead of hanging it).
fn wait(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("a training process ran for 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A directory with the model config and the uninterrupted run's result (`reference/`).
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let model = tritter::TritterConfig { bitnet: false, ..tritter::TritterConfig::test() };
    model.to_json_file(dir.path().join("model.json")).unwrap();
    let status = wait(&mut spawn(dir.path(), &fresh_args("reference")));
    assert!(status.success(), "the uninterrupted run failed");
    let reference = dir.path().join("reference");
    (dir, reference)
}

/// Kills `child` at a seeded random moment: mostly a random time into the step after its next
/// checkpoint appears (with a checkpoint every step, often while one is being written), else at
/// a random time during start-up. Returns whether it was still running when killed.
fn kill_at_random(rng: &mut StdRng, child: &mut Child, pointer: &Path) -> bool {
    if rng.random_bool(0.2) {
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
    } else {
        let before = std::fs::read_to_string(pointer).ok();
        while std::fs::read_to_string(pointer).ok() == before && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..200)));
    }
    child.try_wait().unwrap().is_none() && child.kill().is_ok()
}

#[cfg(unix)]
#[test]
fn runs_killed_at_random_moments_resume_to_the_uninterrupted_result() {
    let mut rng = StdRng::seed_from_u64(crate::fresh_seed("runs_killed_at_random_moments_resume"));
    let (dir, reference) = setup();
    let run = dir.path().join("run");
    let (mut kills, mut runs) = (0, 0);
    while kills < KILLS {
        // One run, killed again and again until it ends by itself.
        runs += 1;
        let _ = std::fs::remove_dir_all(&run);
        let mut newest = 0;
        loop {
            if run.join("model/config.json").is_file() {
                // Killed after writing its final model (config.json comes last): the run is
                // over, and a resume says so by name.
                let mut child = spawn(dir.path(), &resume_args("run"));
                let status = wait(&mut child);
                let stderr = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
                assert!(
                    !status.success() && stderr.contains("the run is finished"),
                    "resume of a finished run: {stderr}"
                );
                break;
            }
            let args = if latest(&run).is_some() { resume_args("run") } else { fresh_args("run") };
            let mut child = spawn(dir.path(), &args);
            let killed = kill_at_random(&mut rng, &mut child, &run.join("checkpoints/latest"));
            let status = wait(&mut child);
            if let Some((step, _)) = latest(&run) {
                assert!(step >= newest, "the latest checkpoint went back from step {newest} to {step}");
                newest = step;
            }
            if killed {
                kills += 1;
                continue;
            }
            let stderr = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
            assert!(status.success(), "a resumed run failed: {stderr}");
            break;
        }
        assert_same_result(&run, &reference, &format!("run {runs}, {kills} kills so far"));
    }
}

#[cfg(unix)]
#[test]
fn interrupted_runs_save_the_step_they_stopped_at_and_resume_to_the_same_result() {
    let mut rng = StdRng::seed_from_u64(crate::fresh_seed("interrupted_runs_save_the_step_they_stopped_at"));
    let (dir, reference) = setup();
    let run = dir.path().join("run");
    let mut interrupts = 0;
    let pointer = run.join("checkpoints/latest");
    loop {
        let before = std::fs::read_to_string(&pointer).ok();
        let args = if before.is_some() { resume_args("run") } else { fresh_args("run") };
        let mut child = spawn(dir.path(), &args);
        // The signal handler is up once training runs, i.e. once a new checkpoint appears.
        while std::fs::read_to_string(&pointer).ok() == before && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if interrupts < INTERRUPTS {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
            // SAFETY: signals a child this test started and has not waited for yet.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
        let status = wait(&mut child);
        let stdout = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
        if status.success() {
            break;
        }
        interrupts += 1;
        assert_eq!(status.code(), Some(130), "{stdout}");
        let step: usize =
            stdout.split("Interrupted at step ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert_eq!(latest(&run).unwrap().0, step, "the interrupted step has no checkpoint");
    }
    assert!(interrupts >= 1, "no interrupt landed before the run finished");
    assert_same_result(&run, &reference, &format!("after {interrupts} interrupts"));
}
