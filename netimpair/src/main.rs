//! The `netimpair` program: binds NFQUEUE queues, runs a `Link` per queue, and answers a control
//! socket. See the library's documentation for what a link does, and `--help` for usage.
//!
//! Run it in the network namespace whose iptables rules queue the packets (NFQUEUE is per
//! namespace), and install the rules after it prints `ready`:
//!
//! ```text
//! ip netns exec client netimpair --queue 10:delay=150,loss=8 --queue 11:rate=600,limit-ms=80 \
//!     --control /tmp/impair.sock
//! ip netns exec client iptables -A OUTPUT -o veth0 -j NFQUEUE --queue-num 10
//! ip netns exec client iptables -A INPUT -i veth0 -j NFQUEUE --queue-num 11
//! ```
//!
//! At run time: SIGUSR1 cuts every queue (drops everything, held packets included), SIGUSR2
//! restores them; the control socket takes lines `cut on|off [QUEUE]`, `set QUEUE SETTINGS`,
//! `stats`, `reset` (the statistics, then zero) and `ping`, and answers each with one line. SIGTERM, SIGINT or SIGHUP: held packets
//! are accepted at once, and the statistics are printed (a line on stderr per queue, and one
//! JSON line `stats {...}` on stdout).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use clap::Parser;
use netimpair::link::{Link, LinkStats, Output};
use netimpair::nfq::{Arrival, Nfq};
use netimpair::spec;

#[derive(Parser, Debug)]
#[command(version, about = "Delay, jitter, loss, rate limits and cuts on NFQUEUE'd packets, for tests")]
struct Args {
    /// A queue and its settings: `NUM` or `NUM:SETTINGS`, e.g. `10:delay=150,jitter=10,loss=8`
    /// or `11:rate=600,limit-ms=80`. Settings: delay (ms), jitter (ms), reorder, loss (%),
    /// burst (p/r[/bad[/good]] in %, Gilbert-Elliott), rate (kbit/s), limit-ms, limit-bytes.
    #[arg(long = "queue", required = true, value_name = "NUM[:SETTINGS]")]
    queues: Vec<String>,
    /// A Unix socket to listen on for control lines (`cut on`, `set 10 loss=5`, `stats`).
    #[arg(long)]
    control: Option<PathBuf>,
    /// The kernel's queue length per queue, in packets: it must hold every packet waiting for
    /// its verdict (the kernel drops packets past it).
    #[arg(long, default_value_t = 16384)]
    kernel_queue_len: u32,
    /// Seed of the random loss and jitter (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the final statistics (JSON) to this file.
    #[arg(long)]
    stats_json: Option<PathBuf>,
    /// The process's nice value: on a busy machine (browsers under test) a late wake-up adds
    /// delay that was not asked for. Best effort (needs root to go below 0).
    #[arg(long, default_value_t = -10, allow_negative_numbers = true)]
    nice: i32,
}

static EXIT: AtomicBool = AtomicBool::new(false);
static CUT_ON: AtomicBool = AtomicBool::new(false);
static CUT_OFF: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    match signal {
        libc::SIGUSR1 => CUT_ON.store(true, Ordering::SeqCst),
        libc::SIGUSR2 => CUT_OFF.store(true, Ordering::SeqCst),
        _ => EXIT.store(true, Ordering::SeqCst),
    }
}

const SIGNALS: [libc::c_int; 5] = [libc::SIGUSR1, libc::SIGUSR2, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Installs the handlers with the signals blocked, and returns the mask to wait with: the
/// signals are delivered only inside `ppoll`, which then returns, so none is missed between a
/// check of the flags and the wait.
fn install_signal_handlers() -> io::Result<libc::sigset_t> {
    // SAFETY: plain libc signal calls on zeroed, then initialised, sigset_t/sigaction values.
    unsafe {
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut blocked);
        for signal in SIGNALS {
            libc::sigaddset(&mut blocked, signal);
        }
        let mut previous: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_BLOCK, &blocked, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        for signal in SIGNALS {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        for signal in SIGNALS {
            libc::sigdelset(&mut previous, signal);
        }
        Ok(previous)
    }
}

struct Queue {
    num: u16,
    link: Link,
}

struct ControlClient {
    stream: UnixStream,
    pending: Vec<u8>,
}

#[derive(Default)]
struct ShellStats {
    verdict_errors: u64,
    flushed_at_exit: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });

    let mut queues = Vec::new();
    for (idx, text) in args.queues.iter().enumerate() {
        let (num, settings) = text.split_once(':').unwrap_or((text, ""));
        let num: u16 = num.trim().parse().with_context(|| format!("--queue {text}: bad queue number"))?;
        if queues.iter().any(|q: &Queue| q.num == num) {
            bail!("--queue {num} given twice");
        }
        let config = spec::parse(settings).with_context(|| format!("--queue {text}"))?;
        queues.push(Queue { num, link: Link::new(config, seed.wrapping_add(idx as u64)) });
    }

    // SAFETY: setpriority on this process only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, args.nice) } != 0 {
        eprintln!("netimpair: cannot set nice {}: {}", args.nice, io::Error::last_os_error());
    }
    let wait_mask = install_signal_handlers().context("signal handlers")?;
    let mut nfq = Nfq::open()?;
    for (idx, queue) in queues.iter().enumerate() {
        let bound = nfq.bind(queue.num, args.kernel_queue_len)?;
        debug_assert_eq!(bound, idx);
    }
    let listener = match &args.control {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let listener =
                UnixListener::bind(path).with_context(|| format!("control socket {}", path.display()))?;
            listener.set_nonblocking(true)?;
            Some(listener)
        }
        None => None,
    };
    for queue in &queues {
        eprintln!("netimpair: queue {}: {}", queue.num, describe_or_pass(&queue.link));
    }
    println!("ready");
    io::stdout().flush()?;

    let started = Instant::now();
    let mut shell = ShellStats::default();
    let mut clients: Vec<ControlClient> = Vec::new();
    let mut arrivals: Vec<Arrival> = Vec::new();
    while !EXIT.load(Ordering::SeqCst) {
        if CUT_ON.swap(false, Ordering::SeqCst) {
            queues.iter_mut().for_each(|q| q.link.set_cut(true));
            eprintln!("netimpair: cut (SIGUSR1)");
        }
        if CUT_OFF.swap(false, Ordering::SeqCst) {
            queues.iter_mut().for_each(|q| q.link.set_cut(false));
            eprintln!("netimpair: restored (SIGUSR2)");
        }

        let deadline = release_due(&mut queues, &mut nfq, Instant::now(), &mut shell);

        let mut fds = vec![libc::pollfd { fd: nfq.fd(), events: libc::POLLIN, revents: 0 }];
        if let Some(listener) = &listener {
            fds.push(libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        let first_client = fds.len();
        for client in &clients {
            fds.push(libc::pollfd { fd: client.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        let timeout = deadline.map(|at| {
            let wait = at.saturating_duration_since(Instant::now());
            libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            }
        });
        // SAFETY: `fds` is a valid array of its length; the timeout and mask outlive the call.
        let ready = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec),
                &wait_mask,
            )
        };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err).context("ppoll");
        }

        if fds[0].revents != 0 {
            // A bounded batch, so that verdicts due meanwhile are not held up by a flood.
            nfq.receive(&mut arrivals, 256).context("reading from NFQUEUE")?;
            let now = Instant::now();
            for arrival in arrivals.drain(..) {
                queues[arrival.queue_idx].link.handle_packet(now, arrival.packet_id, arrival.len);
            }
        }
        if let Some(listener) = &listener {
            if fds[1].revents != 0 {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(true)?;
                            clients.push(ControlClient { stream, pending: Vec::new() });
                        }
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                        Err(err) => return Err(err).context("accepting a control connection"),
                    }
                }
            }
        }
        let readable: Vec<bool> = fds[first_client..].iter().map(|fd| fd.revents != 0).collect();
        let mut closed = Vec::new();
        for (client_idx, client) in clients.iter_mut().enumerate() {
            if readable.get(client_idx).copied().unwrap_or(false)
                && !serve_client(client, &mut queues, &nfq, &shell)
            {
                closed.push(client_idx);
            }
        }
        for client_idx in closed.into_iter().rev() {
            clients.remove(client_idx);
        }
    }

    release_due(&mut queues, &mut nfq, Instant::now(), &mut shell);
    for (queue_idx, queue) in queues.iter_mut().enumerate() {
        for id in queue.link.flush() {
            shell.flushed_at_exit += 1;
            if nfq.verdict(queue_idx, id, true).is_err() {
                shell.verdict_errors += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    for queue in &queues {
        eprintln!("{}", human_stats(queue, elapsed));
    }
    let json = stats_json(&queues, &nfq, &shell);
    println!("stats {json}");
    if let Some(path) = &args.stats_json {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Gives every verdict due at `now`; returns when the next one is due.
fn release_due(queues: &mut [Queue], nfq: &mut Nfq, now: Instant, shell: &mut ShellStats) -> Option<Instant> {
    let mut next: Option<Instant> = None;
    for (queue_idx, queue) in queues.iter_mut().enumerate() {
        loop {
            let (id, accept) = match queue.link.poll_output(now) {
                Output::Accept(id) => (id, true),
                Output::Drop(id, _) => (id, false),
                Output::Timeout(at) => {
                    next = Some(next.map_or(at, |next| next.min(at)));
                    break;
                }
                Output::Idle => break,
            };
            // ENOENT: the kernel forgot the packet (its queue was flushed); nothing to do.
            if nfq.verdict(queue_idx, id, accept).is_err() {
                shell.verdict_errors += 1;
            }
        }
    }
    next
}

/// Reads a control client's lines and answers them; `false` once it is gone.
fn serve_client(client: &mut ControlClient, queues: &mut [Queue], nfq: &Nfq, shell: &ShellStats) -> bool {
    let mut buf = [0u8; 4096];
    let open = loop {
        match client.stream.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => client.pending.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break true,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break false,
        }
        if client.pending.len() > 65536 {
            break false;
        }
    };
    while let Some(end) = client.pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = client.pending.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line).trim().to_owned();
        if line.is_empty() {
            continue;
        }
        let reply = control(&line, queues, nfq, shell);
        // Replies are one short line; a client that cannot take it is dropped.
        if client.stream.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return false;
        }
    }
    open
}

fn control(line: &str, queues: &mut [Queue], nfq: &Nfq, shell: &ShellStats) -> String {
    let mut words = line.splitn(3, ' ');
    let command = words.next().unwrap_or("");
    let arg1 = words.next();
    let rest = words.next();
    let pick = |queues: &mut [Queue], num: Option<&str>| -> Result<Vec<usize>, String> {
        match num {
            None => Ok((0..queues.len()).collect()),
            Some(num) => {
                let num: u16 = num.trim().parse().map_err(|_| format!("bad queue number {num:?}"))?;
                queues.iter().position(|q| q.num == num).map(|idx| vec![idx]).ok_or(format!("no queue {num}"))
            }
        }
    };
    let result = match command {
        "ping" => Ok("ok".to_owned()),
        "stats" => Ok(stats_json(queues, nfq, shell)),
        // The counters so far, then zero: a test's measuring window starts.
        "reset" => {
            let json = stats_json(queues, nfq, shell);
            queues.iter_mut().for_each(|q| q.link.reset_stats());
            Ok(json)
        }
        "cut" => {
            let on = match arg1 {
                Some("on") => Ok(true),
                Some("off") => Ok(false),
                _ => Err("cut on|off [QUEUE]".to_owned()),
            };
            on.and_then(|on| {
                let picked = pick(queues, rest)?;
                for idx in picked {
                    queues[idx].link.set_cut(on);
                }
                eprintln!(
                    "netimpair: {} {}",
                    if on { "cut" } else { "restored" },
                    rest.unwrap_or("all queues")
                );
                Ok("ok".to_owned())
            })
        }
        "set" => pick(queues, arg1).and_then(|picked| {
            let config = spec::parse(rest.unwrap_or("")).map_err(|err| err.to_string())?;
            for idx in picked {
                queues[idx].link.set_config(config.clone());
                eprintln!("netimpair: queue {}: {}", queues[idx].num, describe_or_pass(&queues[idx].link));
            }
            Ok("ok".to_owned())
        }),
        _ => Err(format!(
            "unknown command {command:?} (ping, stats, reset, cut on|off [QUEUE], set QUEUE SETTINGS)"
        )),
    };
    result.unwrap_or_else(|err| format!("error: {err}"))
}

fn describe_or_pass(link: &Link) -> String {
    let text = spec::describe(link.config());
    if text.is_empty() {
        "pass".to_owned()
    } else {
        text
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn human_stats(queue: &Queue, elapsed: Duration) -> String {
    let s: &LinkStats = queue.link.stats();
    let secs = elapsed.as_secs_f64().max(1e-9);
    format!(
        "netimpair: queue {} ({}): in {} pkts ({:.0} kbit/s), out {} ({:.0} kbit/s), dropped {} \
         (loss {}, burst {}, queue full {}, cut {}); added delay mean {:.1} ms, max {:.1} ms \
         (late by mean {:.1} ms, max {:.1} ms); peak backlog {} B",
        queue.num,
        describe_or_pass(&queue.link),
        s.packets_in,
        s.bytes_in as f64 * 8.0 / secs / 1000.0,
        s.packets_out,
        s.bytes_out as f64 * 8.0 / secs / 1000.0,
        s.dropped(),
        s.dropped_loss,
        s.dropped_burst,
        s.dropped_queue_full,
        s.dropped_cut,
        ms(s.mean_added_delay()),
        ms(s.added_delay_max),
        ms(s.mean_late()),
        ms(s.late_max),
        s.peak_backlog_bytes,
    )
}

/// The kernel's own counters for a queue, from /proc/net/netfilter/nfnetlink_queue (of this
/// namespace): packets it dropped because the queue was full, and because our socket was.
fn kernel_drops(num: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/netfilter/nfnetlink_queue").ok()?;
    table.lines().find_map(|line| {
        let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        (fields.len() >= 7 && fields[0] == u64::from(num)).then(|| (fields[5], fields[6]))
    })
}

fn stats_json(queues: &[Queue], nfq: &Nfq, shell: &ShellStats) -> String {
    let queues: Vec<String> = queues
        .iter()
        .map(|queue| {
            let s = queue.link.stats();
            let (kernel_queue_dropped, kernel_user_dropped) = kernel_drops(queue.num).unwrap_or((0, 0));
            format!(
                concat!(
                    r#"{{"queue":{},"settings":"{}","cut":{},"in":{},"in_bytes":{},"out":{},"out_bytes":{},"#,
                    r#""dropped_loss":{},"dropped_burst":{},"dropped_queue_full":{},"dropped_cut":{},"#,
                    r#""mean_added_delay_ms":{:.3},"max_added_delay_ms":{:.3},"mean_late_ms":{:.3},"max_late_ms":{:.3},"#,
                    r#""peak_backlog_bytes":{},"held":{},"#,
                    r#""kernel_queue_dropped":{},"kernel_user_dropped":{}}}"#
                ),
                queue.num,
                spec::describe(queue.link.config()),
                queue.link.is_cut(),
                s.packets_in,
                s.bytes_in,
                s.packets_out,
                s.bytes_out,
                s.dropped_loss,
                s.dropped_burst,
                s.dropped_queue_full,
                s.dropped_cut,
                ms(s.mean_added_delay()),
                ms(s.added_delay_max),
                ms(s.mean_late()),
                ms(s.late_max),
                s.peak_backlog_bytes,
                queue.link.n_held(),
                kernel_queue_dropped,
                kernel_user_dropped,
            )
        })
        .collect();
    format!(
        r#"{{"queues":[{}],"enobufs":{},"verdict_errors":{},"flushed_at_exit":{}}}"#,
        queues.join(","),
        nfq.n_enobufs,
        shell.verdict_errors,
        shell.flushed_at_exit
    )
}
