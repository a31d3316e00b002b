//! The scale-out system test: PostgreSQL, an S3-compatible store (moto), two SFU nodes
//! (`signaling sfu`) and two API replicas (`signaling serve` with `KLASS_CLUSTER=true`), each its
//! own process of the real binary. Participants join through either replica with real SDP
//! offers (str0m), as `visio.rs` does.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Row;
use str0m::Rtc;

use crate::media::start_s3;
use crate::support::{free_port, postgres, API_KEY, JWT_SECRET};
use crate::visio::{next, next_of, offer, public_key, send, token, Socket};

const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789-0123456789";

/// A process of the real binary, killed with the test. Its log goes to a file in `dir`, printed
/// when the test fails.
struct Proc {
    name: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn spawn(name: &str, args: &[&str], env: &[(&str, String)], dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_signaling"));
        command.args(args).env("RUST_LOG", "info,sqlx=warn");
        for var in
            ["KLASS_API_KEY", "KLASS_JWT_SECRET", "KLASS_DATABASE_URL", "KLASS_CONFIG", "KLASS_CONFIG_BODY"]
        {
            command.env_remove(var);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let file = std::fs::File::create(&log).expect("log file");
        command.stdout(Stdio::null()).stderr(Stdio::from(file));
        let child = command.spawn().expect("spawn signaling");
        Proc { name: name.to_owned(), child, log }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_some()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- {} (last lines) ----", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

async fn wait_healthy(url: &str) {
    let started = Instant::now();
    loop {
        if let Ok(response) = reqwest::get(url).await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fields drop in order: the processes (which print their logs on failure) before the folder.
struct Cluster {
    database_url: String,
    pool: sqlx::AnyPool,
    common: Vec<(&'static str, String)>,
    replicas: Vec<(String, Proc)>,
    nodes: Vec<Proc>,
    /// The internal port of each of `nodes`.
    node_ports: Vec<u16>,
    _s3: crate::media::S3Server,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let s3 = start_s3().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = postgres().new_database();
        // Migrations run here first, so the processes do not race to create the tables.
        let pool = signaling::db::connect(&database_url, 2).await.expect("database");
        let config_body = format!(
            "limits: {{ rate_limits: false }}\nworker: {{ concurrency: 0 }}\n\
             storage:\n  url: s3://klass-media\n  options: {{ aws_endpoint: '{}', aws_allow_http: 'true', \
             aws_region: eu-west-3, aws_access_key_id: test, aws_secret_access_key: test }}\n",
            s3.endpoint
        );
        let common = vec![
            ("KLASS_API_KEY", API_KEY.to_owned()),
            ("KLASS_JWT_SECRET", JWT_SECRET.to_owned()),
            ("KLASS_DATABASE_URL", database_url.clone()),
            ("KLASS_CLUSTER_SECRET", CLUSTER_SECRET.to_owned()),
            ("KLASS_CLUSTER_HEARTBEAT_MS", "500".to_owned()),
            ("KLASS_CLUSTER_DEAD_AFTER_MS", "3000".to_owned()),
            ("KLASS_CLUSTER_REAP_AFTER_MS", "5000".to_owned()),
            ("KLASS_CONFIG_BODY", config_body),
            ("KLASS_SFU_UDP_ADDR", "127.0.0.1:0".to_owned()),
            ("KLASS_SFU_TCP_ADDR", "127.0.0.1:0".to_owned()),
        ];
        let mut cluster = Cluster {
            dir,
            database_url,
            pool,
            common,
            replicas: Vec::new(),
            nodes: Vec::new(),
            node_ports: Vec::new(),
            _s3: s3,
        };
        for name in ["node-a", "node-b"] {
            cluster.start_node(name).await;
        }
        for idx in 0..2 {
            let port = free_port();
            let mut env = cluster.common.clone();
            env.push(("KLASS_CLUSTER", "true".to_owned()));
            env.push(("KLASS_HTTP_ADDR", format!("127.0.0.1:{port}")));
            env.push((
                "KLASS_DATA_DIR",
                cluster.dir.path().join(format!("replica{idx}")).display().to_string(),
            ));
            let proc = Proc::spawn(&format!("replica{idx}"), &["serve"], &env, cluster.dir.path());
            let base = format!("http://127.0.0.1:{port}");
            wait_healthy(&format!("{base}/healthz")).await;
            cluster.replicas.push((base, proc));
        }
        cluster
    }

    async fn start_node(&mut self, name: &str) {
        let port = free_port();
        let mut env = self.common.clone();
        env.push(("KLASS_NODE_ID", name.to_owned()));
        env.push(("KLASS_NODE_ADDR", format!("127.0.0.1:{port}")));
        env.push(("KLASS_NODE_DRAIN_TIMEOUT_SECS", "60".to_owned()));
        env.push(("KLASS_DATA_DIR", self.dir.path().join(name).display().to_string()));
        self.nodes.push(Proc::spawn(name, &["sfu"], &env, self.dir.path()));
        self.node_ports.push(port);
        wait_healthy(&format!("http://127.0.0.1:{port}/healthz")).await;
        self.wait_until(|rows| rows.iter().any(|(node, _)| node == name), "the node registers").await;
    }

    fn replica(&self, idx: usize) -> &str {
        &self.replicas[idx].0
    }

    async fn backend(&self, method: Method, path: &str, body: Option<Value>) -> u16 {
        let mut request =
            reqwest::Client::new().request(method, format!("{}{path}", self.replica(0))).bearer_auth(API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("backend request").status().as_u16()
    }

    /// Live nodes and whether each drains.
    async fn nodes(&self) -> Vec<(String, bool)> {
        sqlx::query("SELECT node_id, draining FROM sfu_nodes ORDER BY node_id")
            .fetch_all(&self.pool)
            .await
            .expect("sfu_nodes")
            .iter()
            .map(|row| (row.get::<String, _>("node_id"), row.get::<i64, _>("draining") == 1))
            .collect()
    }

    async fn placement(&self, class_id: &str) -> Option<String> {
        sqlx::query("SELECT node_id FROM room_placements WHERE room_id = $1")
            .bind(class_id)
            .fetch_optional(&self.pool)
            .await
            .expect("room_placements")
            .map(|row| row.get::<String, _>("node_id"))
    }

    async fn wait_until(&self, done: impl Fn(&[(String, bool)]) -> bool, what: &str) {
        let started = Instant::now();
        while !done(&self.nodes().await) {
            assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `user` joins `class_id` through `base`; returns the socket, its peer and the first answer.
async fn join(base: &str, class_id: &str, user: &str) -> (Socket, Rtc, Value) {
    let url = format!("{}/v1/classes/{class_id}/visio/ws", base.replace("http://", "ws://"));
    let mut socket = tokio_tungstenite::connect_async(url).await.expect("websocket connects").0;
    let (rtc, sdp) = offer();
    let message = json!({
        "type": "join", "token": token(user), "sdp": sdp, "tracks": [],
        "e2ee": { "public_key": public_key(user) },
    });
    send(&mut socket, message).await;
    let first = next(&mut socket).await.expect("an answer to join");
    (socket, rtc, first)
}

async fn setup_class(cluster: &Cluster, class_id: &str, n_parents: usize) {
    let class = json!({ "name": format!("class {class_id}"), "tier": "standard", "options": { "confort_famille": false } });
    let status = cluster.backend(Method::PUT, &format!("/v1/classes/{class_id}"), Some(class)).await;
    assert!(status == 200 || status == 201, "{status}");
    let mut people = vec![("teacher".to_owned(), "teacher")];
    people.extend((0..n_parents).map(|idx| (format!("parent{idx}"), "parent")));
    for (user, role) in people {
        let member = json!({ "display_name": format!("Person {user}"), "role": role, "approved": true });
        let status = cluster
            .backend(Method::PUT, &format!("/v1/classes/{class_id}/members/{user}"), Some(member))
            .await;
        assert!(status == 200 || status == 201, "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_two_sfu_nodes_share_rooms_limits_removals_and_drain() {
    let started = Instant::now();
    let mut cluster = Cluster::start().await;
    eprintln!("cluster up in {:?}", started.elapsed());
    assert_eq!(cluster.nodes().await, vec![("node-a".to_owned(), false), ("node-b".to_owned(), false)]);

    // The internal protocol is for holders of the cluster secret only.
    let internal = format!("ws://127.0.0.1:{}{}", cluster.node_ports[0], signaling::cluster::wire::NODE_PATH);
    for bearer in [None, Some("not-the-cluster-secret-0123456789-0123456789")] {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(internal.as_str())
                .unwrap();
        if let Some(bearer) = bearer {
            request.headers_mut().insert("authorization", format!("Bearer {bearer}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("the node let in {bearer:?}: {:?}", other.map(|_| ())),
        }
    }

    // Joins of one class through both replicas land in one room on one node.
    setup_class(&cluster, "std", 12).await;
    let (mut teacher, _teacher_rtc, joined) = join(cluster.replica(0), "std", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut teacher, "admitted").await;
    let (mut parent0, _parent0_rtc, joined) = join(cluster.replica(1), "std", "parent0").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let admitted = next_of(&mut parent0, "admitted").await;
    // The teacher, who joined through the other replica, is in the same room.
    assert_eq!(admitted["participants"][0]["role"], "teacher", "{admitted}");
    let seen = next_of(&mut teacher, "participant_joined").await;
    assert_eq!(seen["participant"]["participant_id"], joined["participant_id"], "{seen}");
    let node = cluster.placement("std").await.expect("the room is placed");

    // The tier limit holds exactly under concurrent joins through both replicas: Standard
    // allows 8 at once; 2 are in, 11 more try at once, 6 get in.
    let joins = (1..12).map(|idx| {
        let base = cluster.replica(idx % 2).to_owned();
        async move {
            let user = format!("parent{idx}");
            let (socket, rtc, first) = join(&base, "std", &user).await;
            (user, socket, rtc, first)
        }
    });
    let results = futures_util::future::join_all(joins).await;
    let mut admitted = Vec::new();
    let mut n_full = 0;
    for (user, socket, rtc, first) in results {
        match first["type"].as_str() {
            Some("joined") => admitted.push((user, socket, rtc)),
            Some("error") if first["code"] == "room_full" => n_full += 1,
            _ => panic!("{user}: unexpected answer {first}"),
        }
    }
    assert_eq!((admitted.len(), n_full), (6, 5), "8 at once on Standard, whichever replica");
    assert_eq!(cluster.placement("std").await.as_deref(), Some(node.as_str()), "still one node");
    let replica_metrics =
        reqwest::get(format!("{}/metrics", cluster.replica(1))).await.unwrap().text().await.unwrap();
    assert!(
        replica_metrics.contains(r#"signaling_cluster_node_requests_total{kind="join",result="ok"}"#),
        "{replica_metrics}"
    );
    let node_idx = cluster.nodes.iter().position(|proc| proc.name == node).expect("the room's node");
    let node_metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", cluster.node_ports[node_idx]))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(node_metrics.contains("sfu_node_replica_connections 2"), "{node_metrics}");
    assert!(node_metrics.contains("sfu_node_draining 0"), "{node_metrics}");

    // A member removed through replica 0 (the class backend's API) is disconnected from the
    // room reached through replica 1.
    let removed_started = Instant::now();
    let status = cluster.backend(Method::DELETE, "/v1/classes/std/members/parent0", None).await;
    assert_eq!(status, 204);
    let left = next_of(&mut parent0, "left").await;
    assert_eq!(left["reason"], "removed_from_class", "{left}");
    assert!(removed_started.elapsed() < Duration::from_secs(5));

    // SIGTERM on the room's node: it drains. It takes no new room (a new class goes to the
    // other node), while the room it has goes on, and later joins of its class still reach it.
    let other = if node == "node-a" { "node-b" } else { "node-a" };
    cluster.nodes[node_idx].signal(libc::SIGTERM);
    cluster
        .wait_until(|rows| rows.iter().any(|(id, draining)| *id == node && *draining), "the node drains")
        .await;
    let node_url = format!("http://127.0.0.1:{}", cluster.node_ports[node_idx]);
    assert_eq!(
        reqwest::get(format!("{node_url}/readyz")).await.unwrap().status(),
        503,
        "draining: not ready"
    );
    assert_eq!(reqwest::get(format!("{node_url}/healthz")).await.unwrap().status(), 200, "but alive");
    setup_class(&cluster, "later", 0).await;
    let (mut later_teacher, _later_rtc, joined) = join(cluster.replica(1), "later", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut later_teacher, "admitted").await;
    assert_eq!(cluster.placement("later").await.as_deref(), Some(other), "no new room on a draining node");
    let (_socket, _rtc, first) = join(cluster.replica(1), "std", "parent0").await;
    assert_eq!(first["code"], "not_a_member", "{first}");
    // parent0 left, so there is room for one: the room on the draining node still admits.
    let status = cluster
        .backend(
            Method::PUT,
            "/v1/classes/std/members/parent0",
            Some(json!({ "display_name": "Person parent0", "role": "parent", "approved": true })),
        )
        .await;
    assert!(status == 200 || status == 201, "{status}");
    let (mut back, _back_rtc, first) = join(cluster.replica(1), "std", "parent0").await;
    assert_eq!(first["type"], "joined", "{first}");
    next_of(&mut back, "admitted").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!cluster.nodes[node_idx].exited(), "a draining node keeps its rooms");

    // The room's session ends (the teacher ends it): nobody was left without a call, and the
    // node exits once it has no room.
    send(&mut teacher, json!({ "type": "end_session" })).await;
    assert_eq!(next_of(&mut teacher, "left").await["reason"], "session_ended_by_moderator");
    for (user, socket, _) in &mut admitted {
        let left = next_of(socket, "left").await;
        assert_eq!(left["reason"], "session_ended_by_moderator", "{user}: {left}");
    }
    let drain_started = Instant::now();
    while !cluster.nodes[node_idx].exited() {
        assert!(drain_started.elapsed() < Duration::from_secs(10), "the drained node exits");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("drained node exited {:?} after its last room ended", drain_started.elapsed());
    assert_eq!(cluster.nodes().await, vec![(other.to_owned(), false)], "it left the registry");

    // The class's next session starts on the remaining node.
    let (mut teacher, _teacher_rtc, joined) = join(cluster.replica(0), "std", "teacher").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut teacher, "admitted").await;
    assert_eq!(cluster.placement("std").await.as_deref(), Some(other));
    drop(back);

    // A node that dies (SIGKILL: no drain, no goodbye) is dead for the replicas once its
    // heartbeat is 3 s old here (6 s by default): its participants' sessions end, and their
    // next join restarts the room on a live node.
    cluster.start_node("node-c").await;
    let other_idx = cluster.nodes.iter().position(|proc| proc.name == other).expect("the other node");
    let killed = Instant::now();
    cluster.nodes[other_idx].signal(libc::SIGKILL);
    for socket in [&mut teacher, &mut later_teacher] {
        while let Some(message) = next(socket).await {
            assert_ne!(message["type"], "admitted", "{message}");
        }
    }
    let ended = killed.elapsed();
    let (mut teacher, _teacher_rtc, teacher_joined) = loop {
        let (mut socket, rtc, first) = join(cluster.replica(1), "std", "teacher").await;
        if first["type"] == "joined" {
            next_of(&mut socket, "admitted").await;
            break (socket, rtc, first);
        }
        assert_eq!(first["code"], "unavailable", "{first}");
        assert!(killed.elapsed() < Duration::from_secs(15), "the room restarts elsewhere");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("node killed: sessions ended after {ended:?}, the room restarted after {:?}", killed.elapsed());
    assert_eq!(cluster.placement("std").await.as_deref(), Some("node-c"));

    // The replica that carries a session stops (SIGTERM, as a deploy does): the page resumes
    // through the other replica with its resume token, and the room's node hands the session
    // over, events and commands included. Nobody left the call.
    let (mut parent1, _parent1_rtc, joined) = join(cluster.replica(0), "std", "parent1").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    next_of(&mut parent1, "admitted").await;
    let parent1_id = joined["participant_id"].clone();
    next_of(&mut teacher, "participant_joined").await;
    let stopped = Instant::now();
    cluster.replicas[1].1.signal(libc::SIGTERM);
    while next(&mut teacher).await.is_some() {}
    eprintln!("replica stopped: its socket closed after {:?}", stopped.elapsed());
    let lost = next_of(&mut parent1, "connection").await;
    assert_eq!(lost["reconnecting"], true, "{lost}");
    let resume_token = teacher_joined["resume_token"].as_str().expect("a resume token").to_owned();
    let resume = |user: &'static str, resume_token: String| {
        let base = cluster.replica(0).replace("http://", "ws://");
        async move {
            let url = format!("{base}/v1/classes/std/visio/ws");
            let mut socket = tokio_tungstenite::connect_async(url).await.expect("websocket connects").0;
            send(
                &mut socket,
                json!({ "type": "resume", "token": token(user), "resume_token": resume_token }),
            )
            .await;
            let first = next(&mut socket).await.expect("an answer to resume");
            (socket, first)
        }
    };
    let (_socket, refused) = resume("parent2", resume_token.clone()).await;
    assert_eq!(refused["code"], "resume_failed", "another user's token: {refused}");
    let (mut teacher, resumed) = resume("teacher", resume_token).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["participant_id"], teacher_joined["participant_id"], "the same participant");
    let back = next_of(&mut parent1, "connection").await;
    assert_eq!(back["reconnecting"], false, "{back}");
    send(&mut teacher, json!({ "type": "mute", "target": parent1_id })).await;
    assert_eq!(next_of(&mut parent1, "mute_changed").await["by_moderator"], true);
    let (_parent2, _parent2_rtc, joined) = join(cluster.replica(0), "std", "parent2").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let seen = next_of(&mut teacher, "participant_joined").await;
    assert_eq!(seen["participant"]["participant_id"], joined["participant_id"], "{seen}");

    // The class backend's role changes and class deletions reach the room's node too.
    let promoted = json!({ "display_name": "Person parent1", "role": "teacher", "approved": true });
    let status = cluster.backend(Method::PUT, "/v1/classes/std/members/parent1", Some(promoted)).await;
    assert_eq!(status, 200);
    let change = next_of(&mut teacher, "role_changed").await;
    assert_eq!(
        (&change["participant_id"], change["role"].as_str()),
        (&parent1_id, Some("teacher")),
        "{change}"
    );
    assert_eq!(cluster.backend(Method::DELETE, "/v1/classes/std", None).await, 204);
    for socket in [&mut teacher, &mut parent1] {
        assert_eq!(next_of(socket, "left").await["reason"], "removed_from_class");
    }

    // The killed node's sessions did not stay open: a replica reaped the node (5 s of silence
    // here, 30 s by default) and ended them, as the node's events loop would have.
    cluster.wait_until(|rows| !rows.iter().any(|(id, _)| id == other), "the dead node is reaped").await;
    let sessions =
        sqlx::query("SELECT class_id, close_reason FROM visio_sessions WHERE node_id = $1 ORDER BY class_id")
            .bind(other)
            .fetch_all(&cluster.pool)
            .await
            .unwrap();
    let sessions: Vec<(String, Option<String>)> =
        sessions.iter().map(|row| (row.get("class_id"), row.get("close_reason"))).collect();
    // `std`'s records went with the class; `later`'s session was on the dead node.
    assert_eq!(
        sessions,
        vec![("later".to_owned(), Some("server_shutdown".to_owned()))],
        "the dead node's sessions ended"
    );
    let open_stays: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM attendance a JOIN visio_sessions s ON s.session_id = a.session_id
         WHERE s.node_id = $1 AND a.left_at IS NULL",
    )
    .bind(other)
    .fetch_one(&cluster.pool)
    .await
    .unwrap()
    .get("n");
    assert_eq!(open_stays, 0, "and everyone's stay in them");
    eprintln!("system test done in {:?} ({})", started.elapsed(), cluster.database_url);
}

/// Periodic work shared by replicas (the retention sweep) runs under a lease: one holder at a
/// time, renewable by its holder, free again once expired or released.
async fn one_replica_at_a_time_holds_a_lease(db: crate::support::Db) {
    use signaling::cluster::lease::{release, try_acquire};
    let server = crate::support::TestServer::start(db).await;
    let pool = signaling::db::connect(&server.database_url(), 2).await.expect("database");
    let name = signaling::privacy::SWEEP_LEASE;
    assert!(try_acquire(&pool, name, "replica-a", 60_000).await.unwrap());
    assert!(!try_acquire(&pool, name, "replica-b", 60_000).await.unwrap(), "held by a");
    assert!(try_acquire(&pool, name, "replica-a", 60_000).await.unwrap(), "a renews its own");
    release(&pool, name, "replica-b").await.unwrap();
    assert!(!try_acquire(&pool, name, "replica-b", 60_000).await.unwrap(), "b cannot release a's");
    release(&pool, name, "replica-a").await.unwrap();
    assert!(try_acquire(&pool, name, "replica-b", 1).await.unwrap(), "released");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(try_acquire(&pool, name, "replica-a", 60_000).await.unwrap(), "expired");
    // Both try at once: exactly one wins.
    release(&pool, name, "replica-a").await.unwrap();
    let (first, second) = tokio::join!(
        try_acquire(&pool, name, "replica-c", 60_000),
        try_acquire(&pool, name, "replica-d", 60_000)
    );
    assert!(first.unwrap() ^ second.unwrap(), "one holder");
}
crate::support::both_backends!(one_replica_at_a_time_holds_a_lease);

/// Placement by load among healthy nodes: the fewest rooms first, never a draining or silent
/// node; a room's placement stands until its node dies; a node claims only what it holds.
async fn rooms_go_to_the_least_loaded_healthy_node(db: crate::support::Db) {
    use signaling::cluster::registry::{NodeAddress, NodeLoad, Registry};
    let server = crate::support::TestServer::start(db).await;
    let pool = signaling::db::connect(&server.database_url(), 2).await.expect("database");
    let registry = Registry::new(pool.clone(), 60_000);
    let node = |id: &str| NodeAddress { node_id: id.to_owned(), url: format!("ws://{id}") };
    let load = |n_participants| NodeLoad { n_rooms: 0, n_participants, cpu_permille: 0 };
    let room = |id: &str| models::RoomId::new(id.to_owned()).unwrap();
    registry.heartbeat(&node("a"), "127.0.0.1:1", &load(10), false).await.unwrap();
    registry.heartbeat(&node("b"), "127.0.0.1:2", &load(0), false).await.unwrap();
    registry.heartbeat(&node("c"), "127.0.0.1:3", &load(0), true).await.unwrap();

    // b has fewer participants; then a has fewer placed rooms; c drains.
    assert_eq!(registry.place(&room("r1")).await.unwrap().node_id, "b");
    assert_eq!(registry.place(&room("r2")).await.unwrap().node_id, "a");
    assert_eq!(registry.place(&room("r1")).await.unwrap().node_id, "b", "a placement stands");
    assert!(registry.claim(&room("r1"), "b").await.unwrap());
    assert!(!registry.claim(&room("r1"), "a").await.unwrap(), "b holds r1");
    assert!(registry.claim(&room("r9"), "c").await.unwrap(), "a node may claim a free room");

    // b goes silent: its room is placed again, elsewhere, at the next join.
    sqlx::query("UPDATE sfu_nodes SET heartbeat_ms = 0 WHERE node_id = 'b'").execute(&pool).await.unwrap();
    assert_eq!(registry.place(&room("r1")).await.unwrap().node_id, "a");
    // Nobody healthy and open: no placement.
    sqlx::query("UPDATE sfu_nodes SET draining = 1").execute(&pool).await.unwrap();
    assert!(registry.place(&room("r3")).await.is_err());
    registry.deregister("a").await.unwrap();
    assert!(registry.placed(&room("r2")).await.unwrap().is_none(), "a's placements left with it");
}
crate::support::both_backends!(rooms_go_to_the_least_loaded_healthy_node);

/// A node silent past `reap_after_ms` is reaped once: its row and placements go, its open
/// sessions and stays end, and the class backend hears `participant_left` and `session_ended`
/// as from the node itself. A node that is only slow is left alone.
async fn a_dead_nodes_sessions_end_with_their_webhooks(db: crate::support::Db) {
    use signaling::cluster::reaper::reap_dead_nodes;
    use signaling::cluster::registry::{NodeAddress, NodeLoad, Registry};
    let server = crate::support::TestServer::start(db).await;
    let pool = signaling::db::connect(&server.database_url(), 2).await.expect("database");
    let registry = Registry::new(pool.clone(), 6000);
    let load = NodeLoad { n_rooms: 1, n_participants: 2, cpu_permille: 0 };
    for node_id in ["dead", "slow"] {
        let address = NodeAddress { node_id: node_id.to_owned(), url: format!("ws://{node_id}") };
        registry.heartbeat(&address, "127.0.0.1:1", &load, false).await.unwrap();
    }
    let now_ms = signaling::cluster::registry::now_ms();
    sqlx::query("UPDATE sfu_nodes SET heartbeat_ms = $1 WHERE node_id = 'dead'")
        .bind(now_ms - 60_000)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sfu_nodes SET heartbeat_ms = $1 WHERE node_id = 'slow'")
        .bind(now_ms - 10_000)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO room_placements (room_id, node_id, placed_ms) VALUES ('c1', 'dead', 0)")
        .execute(&pool)
        .await
        .unwrap();
    for (session_id, node_id) in [("s-dead", "dead"), ("s-slow", "slow")] {
        sqlx::query(
            "INSERT INTO visio_sessions (session_id, class_id, started_at, e2ee, node_id) VALUES ($1, 'c1', $2, 1, $3)",
        )
        .bind(session_id)
        .bind(now_ms / 1000 - 120)
        .bind(node_id)
        .execute(&pool)
        .await
        .unwrap();
        for (participant_id, user_id) in [("p1", "teacher"), ("p2", "parent")] {
            sqlx::query(
                "INSERT INTO attendance (session_id, participant_id, user_id, display_name, role, joined_at, e2ee)
                 VALUES ($1, $2, $3, 'Someone', 'parent', 0, 1)",
            )
            .bind(session_id)
            .bind(participant_id)
            .bind(user_id)
            .execute(&pool)
            .await
            .unwrap();
        }
    }
    sqlx::query("UPDATE attendance SET left_at = 1, leave_reason = 'left' WHERE participant_id = 'p2' AND session_id = 's-dead'")
        .execute(&pool)
        .await
        .unwrap();
    let webhooks = signaling::webhooks::Webhooks::new(&signaling::webhooks::WebhookConfig {
        url: Some("http://127.0.0.1:9/hooks".into()),
        secret: Some("s".repeat(32)),
        ..Default::default()
    });

    let (first, second) =
        tokio::join!(reap_dead_nodes(&pool, &webhooks, 30_000), reap_dead_nodes(&pool, &webhooks, 30_000));
    let mut reaped = first.unwrap();
    reaped.extend(second.unwrap());
    assert_eq!(reaped, vec!["dead".to_owned()], "once, and never the slow one");
    let query = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(0))
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(query("SELECT node_id FROM sfu_nodes").await, vec!["slow"]);
    assert!(query("SELECT room_id FROM room_placements").await.is_empty());
    assert_eq!(
        query("SELECT session_id || ' ' || COALESCE(close_reason, 'open') FROM visio_sessions ORDER BY session_id").await,
        vec!["s-dead server_shutdown", "s-slow open"]
    );
    assert_eq!(
        query(
            "SELECT session_id || ' ' || participant_id || ' ' || COALESCE(leave_reason, 'here') FROM attendance
             ORDER BY session_id, participant_id"
        )
        .await,
        vec!["s-dead p1 connection_lost", "s-dead p2 left", "s-slow p1 here", "s-slow p2 here"]
    );
    let hooks = query("SELECT body FROM webhook_outbox ORDER BY seq").await;
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    let left: serde_json::Value = serde_json::from_str(&hooks[0]).unwrap();
    assert_eq!(
        (left["event"].as_str(), left["user_id"].as_str()),
        (Some("participant_left"), Some("teacher")),
        "{left}"
    );
    assert_eq!(left["reason"], "connection_lost");
    let ended: serde_json::Value = serde_json::from_str(&hooks[1]).unwrap();
    assert_eq!(
        (ended["event"].as_str(), ended["session_id"].as_str()),
        (Some("session_ended"), Some("s-dead")),
        "{ended}"
    );
    assert_eq!(ended["reason"], "server_shutdown");
    assert!(ended["duration_seconds"].as_i64().is_some_and(|secs| (50..=70).contains(&secs)), "{ended}");

    // The slow node restarts with the same id (a pod keeps its name): it ends what its previous
    // run left open before taking rooms.
    let n_sessions = signaling::cluster::reaper::previous_run_of(&pool, &webhooks, "slow").await.unwrap();
    assert_eq!(n_sessions, 1);
    assert_eq!(
        query("SELECT session_id || ' ' || COALESCE(close_reason, 'open') FROM visio_sessions ORDER BY session_id").await,
        vec!["s-dead server_shutdown", "s-slow server_shutdown"]
    );
    assert_eq!(query("SELECT body FROM webhook_outbox").await.len(), 5, "two departures and an end more");
}
crate::support::both_backends!(a_dead_nodes_sessions_end_with_their_webhooks);
