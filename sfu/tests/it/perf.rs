//! CPU used by the SFU, alone on its own thread, with 3 and 8 publishing participants.
//!
//! Slow (about 20 s): runs only with `RUN_SLOW_TESTS=1`. Prints the figures; asserts only that
//! media flowed. Build with `--release` for figures worth quoting.

use std::time::{Duration, Instant};

use models::Role;
use sfu::{Sfu, SfuConfig, SfuEvent};
use tokio::sync::{mpsc, oneshot};

use crate::client::{room, wait_until, Client};

/// CPU time of the calling thread, in nanoseconds (Linux: first field of schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User and system CPU time of the calling thread, in clock ticks (fields 14 and 15 of stat).
fn thread_user_sys_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return (0, 0) };
    // The command name (field 2) may hold spaces; fields after it are counted from its ')'.
    let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return (0, 0) };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |idx: usize| fields.get(idx).and_then(|f| f.parse().ok()).unwrap_or(0);
    (field(11), field(12))
}

enum Probe {
    Cpu(oneshot::Sender<(u64, (u64, u64))>),
}

#[test]
fn cpu_per_packet_with_3_and_8_participants() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        eprintln!("skipped: set RUN_SLOW_TESTS=1");
        return;
    }
    crate::init_log();
    for n_participants in [3, 8] {
        measure(n_participants);
    }
}

fn measure(n_participants: usize) {
    // The SFU on a current-thread runtime of its own thread, so that its CPU time is that
    // thread's and not the clients'.
    let (sfu_tx, sfu_rx) = std::sync::mpsc::channel();
    let (probe_tx, mut probe_rx) = mpsc::channel::<Probe>(4);
    // Room with str0m instances makes deep, wide frames in debug builds.
    let sfu_thread = std::thread::Builder::new()
        .stack_size(16 * 1024 * 1024)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut config = SfuConfig::loopback();
                config.room.stats_interval = Duration::from_secs(1);
                let sfu = Sfu::start(config).await.unwrap();
                sfu_tx.send((sfu.handle.clone(), sfu.events)).unwrap();
                while let Some(Probe::Cpu(reply)) = probe_rx.recv().await {
                    let _ = reply.send((thread_cpu_ns(), thread_user_sys_ticks()));
                }
                sfu.handle.shutdown().await;
            });
        })
        .unwrap();
    let (handle, mut events) = sfu_rx.recv().unwrap();

    let clients_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    clients_runtime.block_on(async {
        let room_id = room(&format!("class-perf-{n_participants}"));
        let mut clients = vec![Client::connect(&handle, &room_id, "teacher", Role::Teacher).await];
        // The last participant joins apart, to measure the time to join.
        for idx in 1..n_participants - 1 {
            clients.push(Client::connect(&handle, &room_id, &format!("parent{idx}"), Role::Parent).await);
        }
        let first_id = clients[0].participant_id.clone();
        // Time to join: from the join call to the first video packet from the teacher.
        let join_started = Instant::now();
        let late = Client::connect(&handle, &room_id, "latecomer", Role::Parent).await;
        wait_until("first video", Duration::from_secs(20), || late.counts_from(&first_id).video > 0).await;
        let time_to_media = join_started.elapsed();
        clients.push(late);
        let last = clients.last().unwrap();
        wait_until("media flowing", Duration::from_secs(20), || last.counts_from(&first_id).video > 30).await;
        // Let renegotiations and keyframe gating settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        while events.try_recv().is_some() {}

        let cpu = |probe_tx: mpsc::Sender<Probe>| async move {
            let (reply, answer) = oneshot::channel();
            probe_tx.send(Probe::Cpu(reply)).await.unwrap();
            answer.await.unwrap()
        };
        let (cpu_start, (user_start, sys_start)) = cpu(probe_tx.clone()).await;
        let wall_start = Instant::now();
        let mut n_in = 0u64;
        let mut n_out = 0u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
            if let SfuEvent::Stats { stats, .. } = event {
                n_in += stats.audio.packets_in + stats.video.packets_in;
                n_out += stats.audio.packets_out + stats.video.packets_out;
            }
        }
        let (cpu_end, (user_end, sys_end)) = cpu(probe_tx.clone()).await;
        let cpu_ns = cpu_end - cpu_start;
        let (user, sys) = (user_end - user_start, sys_end - sys_start);
        let user_share = user as f64 / (user + sys).max(1) as f64;
        let wall = wall_start.elapsed();
        let cpu_share = cpu_ns as f64 / wall.as_nanos() as f64;
        let per_packet_us = cpu_ns as f64 / 1000.0 / (n_in + n_out).max(1) as f64;
        eprintln!("time to join, {n_participants} participants: {} ms to the first video packet", time_to_media.as_millis());
        eprintln!(
            "sfu cpu, {n_participants} participants: {:.1}% of one core; {n_in} packets in, {n_out} out in {:.1} s; \
             {per_packet_us:.1} us per packet handled (in + out); {:.0}% of it in user space, the rest in the kernel",
            cpu_share * 100.0,
            wall.as_secs_f64(),
            user_share * 100.0,
        );
        assert!(n_out > 0, "no media forwarded");
        for client in &clients {
            client.stop().await;
        }
    });
    drop(probe_tx);
    sfu_thread.join().unwrap();
}
