//! Integration tests: the real SFU on loopback sockets, with str0m peers as clients.

mod client;
mod media;
mod perf;
mod rules;
mod slots;
mod tcp;

use sfu::{Sfu, SfuConfig};

pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub async fn start_sfu() -> Sfu {
    start_sfu_with(SfuConfig::loopback()).await
}

pub async fn start_sfu_with(config: SfuConfig) -> Sfu {
    init_log();
    Sfu::start(config).await.unwrap()
}
