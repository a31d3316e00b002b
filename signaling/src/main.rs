//! `signaling serve`: parses configuration, binds, and hands over to `signaling::run`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use signaling::config::Config;
use signaling::AppState;
use tracing_subscriber::EnvFilter;

/// The SFU allocates a few buffers per datagram; mimalloc costs it less CPU per forwarded
/// packet than glibc's allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "signaling", version, about = "Class visio and media server (all-in-one by default)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// YAML configuration file (see config.sample.yaml). Also KLASS_CONFIG.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Demo mode: generate missing secrets, create a demo school, print tokens.
        #[arg(long)]
        demo: bool,
    },
    /// Run an SFU node: the media plane alone, serving API replicas (`cluster.enabled`) over
    /// the internal protocol on `cluster.node_addr`, registered in the shared database.
    Sfu {
        /// YAML configuration file (see config.sample.yaml). Also KLASS_CONFIG.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Runs one media job, as the server's workers start it: a request on standard input,
    /// progress and the result on standard output (not for people).
    #[command(name = "media-job", hide = true)]
    MediaJob,
}

fn main() -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries only what the user asked for (the demo's instructions).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match Cli::parse().command {
        // A job's child process: no runtime, no server, only the pipeline.
        Command::MediaJob => std::process::exit(media_worker::child::main()),
        Command::Serve { config, demo } => {
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(serve(config, demo))
        }
        Command::Sfu { config } => {
            let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(sfu_node(config))
        }
    }
}

async fn serve(config_file: Option<PathBuf>, demo: bool) -> anyhow::Result<()> {
    let mut config = Config::load(config_file.as_deref(), &|key| std::env::var(key).ok())?;
    config.demo |= demo;
    if let Err(err) = config.validate() {
        eprintln!("signaling: refusing to start: {err}");
        std::process::exit(2);
    }
    let state = AppState::new(config).await?;
    let listener = tokio::net::TcpListener::bind(state.config.http.addr)
        .await
        .with_context(|| format!("cannot listen on {}", state.config.http.addr))?;
    if state.config.demo {
        let users = signaling::demo::seed(&state).await.context("cannot create the demo school")?;
        println!("{}", signaling::demo::instructions(&state, &users));
    }
    tracing::info!(addr = %listener.local_addr()?, "listening");
    signaling::run(listener, state, shutdown_signal()).await
}

async fn sfu_node(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = Config::load(config_file.as_deref(), &|key| std::env::var(key).ok())?;
    if let Err(err) = config.validate().and_then(|()| config.validate_cluster()) {
        eprintln!("signaling sfu: refusing to start: {err}");
        std::process::exit(2);
    }
    let listener = tokio::net::TcpListener::bind(config.cluster.node_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.cluster.node_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "sfu node listening for replicas");
    signaling::cluster::node::run(config, listener, shutdown_signal()).await
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes sends before killing a pod).
async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed we cannot be stopped by Ctrl-C anyway; wait forever.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
