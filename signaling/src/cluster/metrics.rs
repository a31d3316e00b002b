//! What a replica and a node of a cluster count, besides what one process already does.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// A replica's requests to SFU nodes that decide where a participant goes.
#[derive(Clone)]
pub struct ReplicaMetrics {
    node_requests: IntCounterVec,
}

/// How a join or an adoption went: `ok`, `refused` (the room's answer: full, locked...),
/// `elsewhere` (draining node, or another node holds the room: placed again), `lost` (the node
/// did not answer), `no_node` (no healthy node, or its database lookup failed).
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Ok,
    Refused,
    Elsewhere,
    Lost,
    NoNode,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Elsewhere => "elsewhere",
            Outcome::Lost => "lost",
            Outcome::NoNode => "no_node",
        }
    }
}

impl ReplicaMetrics {
    pub fn new(registry: &Registry) -> ReplicaMetrics {
        let opts = Opts::new(
            "signaling_cluster_node_requests_total",
            "Joins and adoptions (resumes through another replica) sent to SFU nodes, by outcome.",
        );
        // Fixed names and labels, registered once on this process's registry.
        let node_requests = IntCounterVec::new(opts, &["kind", "result"]).expect("valid metric");
        registry.register(Box::new(node_requests.clone())).expect("unique metric name");
        ReplicaMetrics { node_requests }
    }

    pub fn join(&self, outcome: Outcome) {
        self.node_requests.with_label_values(&["join", outcome.as_str()]).inc();
    }

    pub fn adopt(&self, outcome: Outcome) {
        self.node_requests.with_label_values(&["adopt", outcome.as_str()]).inc();
    }
}

/// A node's own state, for its dashboard and its drain.
#[derive(Clone)]
pub struct NodeMetrics {
    pub draining: IntGauge,
    pub replica_connections: IntGauge,
    /// Participants whose replica's connection closed, kept until a replica adopts them.
    pub participants_without_replica: IntGauge,
}

impl NodeMetrics {
    pub fn new(registry: &Registry) -> NodeMetrics {
        let gauge = |name: &str, help: &str| {
            // Fixed names, registered once on this process's registry.
            let gauge = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(gauge.clone())).expect("unique metric name");
            gauge
        };
        NodeMetrics {
            draining: gauge("sfu_node_draining", "1 while this SFU node drains (takes no new room)."),
            replica_connections: gauge("sfu_node_replica_connections", "API replicas connected to this SFU node."),
            participants_without_replica: gauge(
                "sfu_node_participants_without_replica",
                "Participants whose replica's connection closed, kept for the grace period until a replica adopts them.",
            ),
        }
    }
}
