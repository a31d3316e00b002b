//! Test support: the real server on a loopback socket, over SQLite or a real PostgreSQL.

use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use models::UserId;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use signaling::config::Config;
use signaling::AppState;
use tokio::sync::oneshot;

pub const API_KEY: &str = "test-api-key-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Generates one test per database backend from an `async fn(Db)`.
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::support::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::support::Db::Postgres).await;
            }
        }
    };
}
pub(crate) use both_backends;

pub struct TestServer {
    pub base: String,
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    data_dir_guard: tempfile::TempDir,
    database_url: String,
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        TestServer::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let database_url = (db == Db::Postgres).then(|| postgres().new_database());
        TestServer::start_in(data_dir, database_url, adjust).await
    }

    /// Stops this server (as a restart would: what is in memory is gone) and starts a new one on
    /// the same database and data directory.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server stops");
        }
        let database_url = self.database_url.starts_with("postgres").then(|| self.database_url.clone());
        let data_dir = std::mem::replace(&mut self.data_dir_guard, tempfile::tempdir().expect("temp dir"));
        TestServer::start_in(data_dir, database_url, adjust).await
    }

    async fn start_in(
        data_dir: tempfile::TempDir,
        database_url: Option<String>,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut config = Config { data_dir: data_dir.path().to_path_buf(), ..Config::default() };
        config.auth.api_key = Some(API_KEY.into());
        config.auth.jwt_secret = Some(JWT_SECRET.into());
        // Every test server has its own SFU: ephemeral ports, so they can run side by side.
        config.sfu.udp_addr = "127.0.0.1:0".parse().expect("socket address");
        config.sfu.tcp_addr = Some("127.0.0.1:0".parse().expect("socket address"));
        // Media jobs run in child processes of the real binary, as in production (this test
        // executable cannot run them).
        config.worker.job_program = Some(PathBuf::from(env!("CARGO_BIN_EXE_signaling")));
        config.database.url = database_url;
        adjust(&mut config);
        config.validate().expect("valid test config");
        let database_url = config.database_url();
        let state = AppState::new(config).await.expect("server state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            signaling::run(listener, state, async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        TestServer {
            base,
            client: Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            data_dir_guard: data_dir,
            database_url,
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone()
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir_guard.path()
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{}", self.base, path))
    }

    pub fn backend(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(API_KEY)
    }

    pub fn user(&self, method: Method, path: &str, user: &str) -> RequestBuilder {
        let user_id = UserId::new(user).expect("valid user id");
        self.request(method, path).bearer_auth(signaling::auth::mint_hs256(JWT_SECRET, &user_id, 600))
    }

    /// `user`'s request, sent.
    pub async fn call(&self, method: Method, path: &str, user: &str) -> Response {
        self.user(method, path, user).send().await.expect("the server answers")
    }

    /// A class with an approved teacher (`teacher`) and parent (`parent`).
    pub async fn class_with_people(&self, class_id: &str, tier: &str, confort_famille: bool) {
        self.put_class(class_id, tier, confort_famille).await;
        self.put_member(class_id, "teacher", "teacher", true).await;
        self.put_member(class_id, "parent", "parent", true).await;
    }

    /// A new post of `teacher` in the class; returns its id.
    pub async fn new_post(&self, class_id: &str) -> String {
        let (status, body) =
            status_json(self.call(Method::POST, &format!("/v1/classes/{class_id}/posts"), "teacher").await)
                .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["post_id"].as_str().expect("a post id").to_owned()
    }

    pub async fn put_class(&self, class_id: &str, tier: &str, confort_famille: bool) -> Response {
        let body = serde_json::json!({
            "name": format!("class {class_id}"),
            "tier": tier,
            "options": { "confort_famille": confort_famille },
        });
        self.backend(Method::PUT, &format!("/v1/classes/{class_id}"))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn put_member(&self, class_id: &str, user_id: &str, role: &str, approved: bool) -> Response {
        let body = serde_json::json!({ "display_name": format!("Person {user_id}"), "role": role, "approved": approved });
        self.backend(Method::PUT, &format!("/v1/classes/{class_id}/members/{user_id}"))
            .json(&body)
            .send()
            .await
            .expect("request")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Status and JSON body of a response. Asserts the server never answers a 5xx to a test.
pub async fn status_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    assert!(!status.is_server_error(), "server error {status}: {text}");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body)
}

/// Asserts an error answer: status and code.
pub async fn expect_error(response: Response, status: u16, code: &str) -> Value {
    let (actual, body) = status_json(response).await;
    assert_eq!(actual.as_u16(), status, "body: {body}");
    assert_eq!(body["code"], code, "body: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "body: {body}");
    body
}

/// One PostgreSQL server per test process, started from Debian's binaries, killed with the process.
pub struct Postgres {
    port: u16,
    n_databases: AtomicUsize,
}

pub fn postgres() -> &'static Postgres {
    static POSTGRES: OnceLock<Postgres> = OnceLock::new();
    POSTGRES.get_or_init(Postgres::start)
}

fn postgres_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: run scripts/install-deps.sh")
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("no /usr/lib/postgresql/*/bin/postgres: run scripts/install-deps.sh")
}

/// PostgreSQL refuses to run as root; when we are root, run it as the `postgres` user.
fn postgres_user() -> Option<(u32, u32)> {
    if unsafe_geteuid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let line = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .expect("no postgres user: run scripts/install-deps.sh");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().expect("numeric uid"), fields[3].parse().expect("numeric gid")))
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn as_postgres_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

/// The clusters of earlier test runs (`klass-pg-<pid>`, about 400 MB each) whose process is gone:
/// their postgres died with it (PDEATHSIG), and nothing else removes them.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("klass-pg-")) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Postgres {
    fn start() -> Postgres {
        let bin = postgres_bin_dir();
        let user = postgres_user();
        remove_stale_clusters();
        let root = std::env::temp_dir().join(format!("klass-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("pg dir");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("chown pg dir");
        }
        let data = root.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"]).arg(&data);
        as_postgres_user(&mut initdb, user);
        let output = initdb.output().expect("run initdb");
        assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));

        let port = StdListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        // The server must outlive every test thread, and die with the test process: a dedicated thread
        // spawns it with PDEATHSIG (which fires when the *spawning thread* exits) and never exits.
        let (tx, rx) = mpsc::channel::<()>();
        let log = root.join("postgres.log");
        std::thread::spawn(move || {
            let mut command = Command::new(bin.join("postgres"));
            command
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .arg("-k")
                .arg(&root)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).map(Stdio::from).unwrap_or(Stdio::null()));
            as_postgres_user(&mut command, user);
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child: Child = command.spawn().expect("start postgres");
            let _ = tx.send(());
            // Blocks for the life of the test process; returns early only if postgres dies.
            let status = child.wait();
            eprintln!("test postgres exited: {status:?}");
        });
        rx.recv().expect("postgres spawned");
        wait_for_port(port, Duration::from_secs(30));
        Postgres { port, n_databases: AtomicUsize::new(0) }
    }

    /// A fresh, empty database on the shared server.
    pub fn new_database(&self) -> String {
        let name = format!("t{}", self.n_databases.fetch_add(1, Ordering::SeqCst));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = Command::new("psql")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres"])
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", &format!("CREATE DATABASE {name}")])
                .output()
                .expect("run psql");
            if output.status.success() {
                break;
            }
            // The port may be open before the server accepts connections.
            assert!(
                Instant::now() < deadline,
                "CREATE DATABASE failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "postgres did not open port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the `signaling` binary with the given environment; returns the child.
pub fn spawn_binary(args: &[&str], env: &[(&str, &str)], data_dir: &Path) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signaling"));
    command
        .args(args)
        .env("KLASS_DATA_DIR", data_dir)
        .env("KLASS_SFU_UDP_ADDR", "127.0.0.1:0")
        .env("KLASS_SFU_TCP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info");
    for var in
        ["KLASS_API_KEY", "KLASS_JWT_SECRET", "KLASS_DATABASE_URL", "KLASS_CONFIG", "KLASS_CONFIG_BODY"]
    {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.spawn().expect("spawn signaling binary")
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

/// A class backend stand-in: records webhook deliveries, refuses the very first one with a 500.
pub async fn webhook_receiver(
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>) {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let store = store.clone();
            async move {
                let mut deliveries = store.lock().unwrap();
                deliveries.push((headers, body));
                if deliveries.len() == 1 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

pub const WEBHOOK_SECRET: &str = "webhook-secret-0123456789-0123456789";
