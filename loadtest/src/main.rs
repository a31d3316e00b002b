//! `loadtest`: acts as many real call participants against a running server, through its public
//! API only, and prints what they measured.
//!
//! - [`call`]: one class call of N participants speaking protocol v2 (one offer with fixed receive
//!   slots at join, never renegotiated); prints admission, join and connection times, what each
//!   participant's slots delivered against what they should have, slot switch latency after a
//!   change of speakers and the server's CPU per forwarded packet. Exit status 1 on failure.
//! - [`soak`]: a school day in fast motion for minutes.
//! - [`surge`]: a Monday at 9:00, hundreds of calls starting within a minute across API replicas:
//!   joins per second, join latency percentiles, errors by kind.
//!
//! The participants: [`client`] (the WebSocket protocol and a str0m peer), [`media`] (what they
//! publish and who speaks when), [`e2ee`] (end-to-end encryption as the page does it, on by
//! default), [`reassembly`] (video frames rebuilt to be decrypted), [`timeline`] (what they
//! record), [`report`] (judging it) and [`server`] (the server's CPU and `/metrics`).
//!
//! It links only `models` and speaks the public protocol like any client.

mod call;
mod client;
mod e2ee;
mod ivf;
mod media;
mod reassembly;
mod report;
mod server;
mod soak;
mod surge;
mod timeline;

use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(name = "loadtest", about = "Many real call participants against a running server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One class call with N participants.
    Call(call::CallArgs),
    /// Minutes of join/leave churn, API calls and uploads in several classes; checks that no
    /// attendance row or webhook is lost and that the server's memory stays flat.
    Soak(soak::SoakArgs),
    /// A Monday at 9:00: hundreds of classes start their calls within a minute, through one or
    /// several API replicas; joins per second, join latency and errors by kind.
    Surge(surge::SurgeArgs),
}

/// The server, and what the class backend holds to act on it.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The class backend's API key (to create classes and their members).
    #[arg(long, env = "KLASS_API_KEY")]
    pub api_key: String,
    /// The HS256 secret of user tokens.
    #[arg(long, env = "KLASS_JWT_SECRET")]
    pub jwt_secret: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ok = match Cli::parse().command {
        Command::Call(args) => call::call(args).await?,
        Command::Soak(args) => soak::soak(args).await?,
        Command::Surge(args) => surge::surge(args).await?,
    };
    std::process::exit(if ok { 0 } else { 1 });
}

/// A user token, as the class backend mints them.
fn mint(secret: &str, user: &str) -> anyhow::Result<String> {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    let claims = json!({ "sub": user, "exp": exp });
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
