//! Data-parallel training over two machines, played by two processes on localhost: `tritter
//! orchestrator` and two copies of this test binary, each running [`node_process`] as one node
//! (burn-collective's WebSocket transport between them). They train as two workers in one
//! process do, and a node that leaves ends the other's run by name instead of hanging it.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tritter::train::{Nodes, Parallel, TrainConfig};
use tritter::{TritterConfig, TritterModel};

use crate::train::common::{fresh_rng, model_config, train_config, B};
use crate::train::parallel::{assert_same_training, initial, run_on, DRIFT, EXACT};

/// The environment variable that makes [`node_process`] a node: "RANK STEPS DEVICES
/// ORCHESTRATOR_PORT NODE_PORT SEED DIR".
const NODE: &str = "TRITTER_TEST_NODE";

/// How long a node process may run before the test kills it and fails.
const NODE_LIMIT: Duration = Duration::from_secs(240);

/// One node of the tests below, started by them with [`NODE`] set; without it, nothing to do.
/// Trains from `DIR/initial` on the padded windows of `SEED` as node RANK of 2 with DEVICES
/// CPU workers and leaves
/// `DIR/node-RANK/` with the final model and losses, or with `error.txt`.
#[test]
#[ignore = "a node process of the tests in this file, started by them"]
fn node_process() {
    let Ok(role) = std::env::var(NODE) else { return };
    let fields: Vec<&str> = role.splitn(7, ' ').collect();
    let number = |i: usize| fields[i].parse::<u64>().unwrap();
    let (rank, dir) = (number(0) as u32, PathBuf::from(fields[6]));
    let parallel = Parallel {
        devices: vec![Default::default(); number(2) as usize],
        nodes: Some(Nodes {
            count: 2,
            rank,
            orchestrator: format!("ws://127.0.0.1:{}", fields[3]),
            node_address: format!("ws://127.0.0.1:{}", fields[4]),
        }),
        timeout: Duration::from_secs(30),
    };
    let run_dir = dir.join(format!("node-{rank}"));
    let config = node_config(number(5), number(1) as usize);
    match run_on(&dir.join("initial"), &config, number(5), &run_dir, &parallel) {
        Ok(outcome) => {
            outcome.model.save_checkpoint(run_dir.join("final")).unwrap();
            std::fs::write(run_dir.join("losses.json"), serde_json::to_string(&outcome.losses).unwrap()).unwrap();
        }
        Err(error) => {
            std::fs::create_dir_all(&run_dir).unwrap();
            std::fs::write(run_dir.join("error.txt"), error.to_string()).unwrap();
        }
    }
}

fn node_config(seed: u64, steps: usize) -> TrainConfig {
    TrainConfig { batch_size: 6, checkpoint_every: 1, ..train_config(seed, steps) }
}

#[test]
fn two_processes_over_localhost_train_like_one_process() {
    let full_precision = TritterConfig { bitnet: false, ..model_config() };
    let cluster = Cluster::start("two_processes_over_localhost_train_like_one_process", &full_precision);
    let (seed, dir) = (cluster.seed, cluster.dir.path());
    let init = dir.join("initial");
    let steps = 8;
    let nodes = [0, 1].map(|rank| cluster.node(rank, steps, 1));
    let config = node_config(seed, steps);
    let local = |workers| {
        let run_dir = dir.join(format!("local-{workers}"));
        run_on(&init, &config, seed, &run_dir, &Parallel::repeated(&Default::default(), workers)).unwrap()
    };
    let (one, two) = (local(1), local(2));
    for node in nodes {
        node.wait();
    }
    for rank in 0..2 {
        let run_dir = dir.join(format!("node-{rank}"));
        let Ok(losses) = std::fs::read_to_string(run_dir.join("losses.json")) else {
            let read = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
            let log = read(dir.join("node-0.log")) + &read(dir.join("node-1.log"));
            panic!("node {rank} failed: {}\n{log}", read(run_dir.join("error.txt")));
        };
        let losses: Vec<(usize, f32)> = serde_json::from_str(&losses).unwrap();
        let model = TritterModel::<B>::load_checkpoint(run_dir.join("final"), &Default::default()).unwrap();
        // Two addends summed in either order give the same float: bit-identical to one process.
        let what = format!("node {rank} of 2 vs 2 workers in one process");
        assert_same_training((&two.losses, &two.model), (&losses, &model), EXACT, &what);
        let what = format!("node {rank} of 2 vs 1 worker");
        assert_same_training((&one.losses, &one.model), (&losses, &model), DRIFT, &what);
    }
    let latest = tritter::train::resolve_run_checkpoint(&dir.join("node-0")).unwrap();
    assert!(latest.ends_with(format!("step-{steps:08}")), "{}", latest.display());
    assert!(!dir.join("node-1/checkpoints").exists(), "node 1 wrote checkpoints: node 0 alone does");
}

/// Node 1 stops after 3 of node 0's 6 steps: node 0's run ends with an error naming its worker
/// and step 4 (at once or after its 30 s timeout, not hanging), and its step-3 checkpoint is the latest.
#[test]
fn a_node_that_leaves_ends_the_others_run_by_name() {
    let cluster = Cluster::start("a_node_that_leaves_ends_the_others_run_by_name", &model_config());
    let dir = cluster.dir.path();
    let (staying, leaving) = (cluster.node(0, 6, 1), cluster.node(1, 3, 1));
    leaving.wait();
    let started = Instant::now();
    staying.wait();
    assert!(started.elapsed() < Duration::from_secs(60), "node 0 took {:?} to give up", started.elapsed());
    let error = std::fs::read_to_string(dir.join("node-0/error.txt")).expect("node 0's run did not fail");
    assert!(error.contains("worker 0 ") && error.contains("step 4"), "{error}");
    let latest = tritter::train::resolve_run_checkpoint(&dir.join("node-0")).unwrap();
    assert!(latest.ends_with("step-00000003"), "{}", latest.display());
}

/// Node 0 with 2 workers and node 1 with 1: each takes the rows its own count gives, which would
/// train on some rows twice and others never; the all-reduce counts the workers and both refuse.
#[test]
fn nodes_with_different_device_counts_are_refused() {
    let cluster = Cluster::start("nodes_with_different_device_counts_are_refused", &model_config());
    let dir = cluster.dir.path();
    let nodes = [(0, 2), (1, 1)].map(|(rank, devices)| cluster.node(rank, 4, devices));
    for (rank, node) in nodes.into_iter().enumerate() {
        node.wait();
        let error = std::fs::read_to_string(dir.join(format!("node-{rank}/error.txt")));
        let error = error.unwrap_or_else(|_| panic!("node {rank}'s run did not fail"));
        assert!(error.contains("step 1") && error.contains("same number of devices"), "node {rank}: {error}");
    }
}

/// A test's two-node run: the orchestrator, three free ports (the orchestrator's and each
/// node's) and a directory holding the initial model, the nodes' runs and every process's log.
struct Cluster {
    _orchestrator: Running,
    ports: [u16; 3],
    seed: u64,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Seeds `test`, saves `model`'s initial weights and starts the orchestrator.
    fn start(test: &str, model: &TritterConfig) -> Self {
        let (_, seed) = fresh_rng(test);
        let dir = tempfile::tempdir().unwrap();
        initial(model, dir.path());
        let listeners = [(); 3].map(|_| TcpListener::bind("127.0.0.1:0").unwrap());
        let ports = listeners.map(|listener| listener.local_addr().unwrap().port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_tritter"));
        command.args(["orchestrator", "--port", &ports[0].to_string()]);
        let orchestrator = Running::start(command, &dir.path().join("orchestrator.log"));
        Self { _orchestrator: orchestrator, ports, seed, dir }
    }

    /// Node `rank` running `steps` steps on `devices` workers.
    fn node(&self, rank: u32, steps: usize, devices: usize) -> Running {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", "train::nodes::node_process", "--ignored", "--nocapture"]);
        let (orchestrator, port, seed) = (self.ports[0], self.ports[1 + rank as usize], self.seed);
        let dir = self.dir.path();
        command.env(NODE, format!("{rank} {steps} {devices} {orchestrator} {port} {seed} {}", dir.display()));
        Running::start(command, &dir.join(format!("node-{rank}.log")))
    }
}

/// A child process, killed when dropped (a failing test leaves nothing behind).
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(mut command: Command, log: &Path) -> Self {
        let out = File::create(log).unwrap();
        command.stdout(out.try_clone().unwrap()).stderr(out);
        Self { child: command.spawn().unwrap(), log: log.to_path_buf() }
    }

    /// Waits for a successful exit within [`NODE_LIMIT`], or fails with the process's output.
    fn wait(mut self) {
        let deadline = Instant::now() + NODE_LIMIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(status.success(), "{} failed: {status}\n{log}", self.log.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("{} did not finish within {NODE_LIMIT:?}\n{log}", self.log.display());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
