//! Where the replicas of a data-parallel run live: this process's devices and, for a run over
//! several machines, how the nodes meet (burn-collective's four global settings).

use std::time::Duration;

use burn::collective::CollectiveConfig;

use crate::error::{Result, TritterError};

/// Data-parallel training: one worker thread and model replica per device; each step's batch is
/// split by rows over every worker of every node, and their gradients are summed with
/// burn-collective's all-reduce (weighted so the sum equals the whole batch's gradient).
#[derive(Debug, Clone)]
pub struct Parallel<D> {
    /// This process's devices, one worker each (the same device may repeat, e.g. the CPU).
    pub devices: Vec<D>,
    /// The machines of the run, if more than this one.
    pub nodes: Option<Nodes>,
    /// How long the training loop waits for its workers' step (which waits for the other
    /// nodes) before it ends the run with an error naming the worker.
    pub timeout: Duration,
}

/// A run over several machines, each running the same training with its own `rank`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// Machines in the run (each with the same number of devices).
    pub count: u32,
    /// This machine's place in `0..count`: which rows of each batch it trains on. Node 0
    /// evaluates and writes the checkpoints.
    pub rank: u32,
    /// The global orchestrator (`tritter orchestrator`), e.g. `ws://10.0.0.1:3000`.
    pub orchestrator: String,
    /// Where the other nodes reach this one, e.g. `ws://10.0.0.2:3001`; this node serves its
    /// gradients on that port.
    pub node_address: String,
}

/// The default wait for a step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

impl<D: Clone> Parallel<D> {
    /// One worker on `device`: plain training.
    pub fn single(device: &D) -> Self {
        Self { devices: vec![device.clone()], nodes: None, timeout: DEFAULT_TIMEOUT }
    }

    /// `count` workers on `device` (the CPU's way of running several workers).
    pub fn repeated(device: &D, count: usize) -> Self {
        Self { devices: vec![device.clone(); count], ..Self::single(device) }
    }

    /// Workers over all nodes.
    pub fn total_workers(&self) -> usize {
        self.devices.len() * self.nodes.as_ref().map_or(1, |n| n.count as usize)
    }

    /// The global index of this process's first worker.
    pub fn first_worker(&self) -> usize {
        self.devices.len() * self.nodes.as_ref().map_or(0, |n| n.rank as usize)
    }

    /// Whether the run needs the collective (more than one worker anywhere).
    pub fn is_parallel(&self) -> bool {
        self.total_workers() > 1
    }

    /// Whether this process evaluates and writes checkpoints (node 0; any single machine).
    pub fn is_lead(&self) -> bool {
        self.nodes.as_ref().is_none_or(|nodes| nodes.rank == 0)
    }

    /// Checks the settings, naming the bad one.
    pub fn validate(&self, batch_size: usize) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(TritterError::InvalidConfig { field, reason });
        if self.devices.is_empty() {
            return bad("devices", "at least one device is needed".into());
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be longer than 0 s".into());
        }
        if let Some(nodes) = &self.nodes {
            nodes.validate()?;
        }
        if batch_size < self.total_workers() {
            let reason = format!(
                "{batch_size} rows cannot be split over {} workers (one row each at least)",
                self.total_workers()
            );
            return bad("batch_size", reason);
        }
        Ok(())
    }

    /// burn-collective's settings for this process's workers.
    pub(crate) fn collective_config(&self) -> Result<CollectiveConfig> {
        let config = CollectiveConfig::default().with_num_devices(self.devices.len());
        let Some(nodes) = &self.nodes else { return Ok(config) };
        let address =
            |field, text: &str| text.parse().map_err(|reason: String| TritterError::InvalidConfig { field, reason });
        let port = nodes.port()?;
        // burn-collective serves the port in a task whose failure nobody sees: try it first.
        std::net::TcpListener::bind(("0.0.0.0", port)).map_err(|e| TritterError::InvalidConfig {
            field: "node_address",
            reason: format!("this node cannot serve port {port}: {e}"),
        })?;
        Ok(config
            .with_num_nodes(nodes.count)
            .with_global_address(address("orchestrator", &nodes.orchestrator)?)
            .with_node_address(address("node_address", &nodes.node_address)?)
            .with_data_service_port(port))
    }
}

impl Nodes {
    fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(TritterError::InvalidConfig { field, reason });
        if self.count < 2 {
            return bad("nodes", format!("a run over machines needs at least 2 nodes, got {}", self.count));
        }
        if self.rank >= self.count {
            return bad("node_rank", format!("{} is not below nodes = {}", self.rank, self.count));
        }
        for (field, address) in [("orchestrator", &self.orchestrator), ("node_address", &self.node_address)] {
            if !address.starts_with("ws://") && !address.starts_with("wss://") {
                return bad(field, format!("{address:?} is not a WebSocket address (ws://HOST:PORT)"));
            }
        }
        self.port().map(|_| ())
    }

    /// The port of `node_address`, which this node's data service listens on.
    fn port(&self) -> Result<u16> {
        let port = self.node_address.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok());
        port.ok_or_else(|| TritterError::InvalidConfig {
            field: "node_address",
            reason: format!("{:?} has no port (ws://HOST:PORT)", self.node_address),
        })
    }
}
