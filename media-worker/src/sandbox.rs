//! The parent side of a job: starts the child process ([`crate::child`]) with resource limits,
//! reads its progress, and tells apart how it ended.
//!
//! Limits, set between `fork` and `exec` with `setrlimit`:
//! - memory: `RLIMIT_DATA` (private writable memory: the heap and anonymous mappings, which is
//!   where decoders allocate frames), so an allocation over the limit fails in the child;
//! - CPU time: `RLIMIT_CPU`, whose soft limit sends `SIGXCPU`;
//! - open files: `RLIMIT_NOFILE`; output size: `RLIMIT_FSIZE`; no core dumps;
//! - wall time: the parent kills a child that runs too long;
//! - the child dies with its parent (`PR_SET_PDEATHSIG`) and runs in its own process group.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::child::{ChildMessage, ChildRequest, ChildResult, EXIT_OUT_OF_MEMORY};

/// The limits of one job's child process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobLimits {
    /// Private writable memory of the child, in MiB. A 10-minute 4K HEVC video with face blur
    /// stays under 1.5 GiB.
    pub memory_mb: u64,
    /// CPU time of the child (all its threads), in seconds.
    pub cpu_secs: u64,
    /// Wall-clock time of the child, in seconds.
    pub wall_secs: u64,
    /// Open file descriptors of the child.
    pub open_files: u64,
    /// Largest file the child may write, in MiB.
    pub output_mb: u64,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits { memory_mb: 3072, cpu_secs: 3600, wall_secs: 3600, open_files: 64, output_mb: 4096 }
    }
}

/// The program a worker starts for each job, and the arguments that make it a job child:
/// `media-worker job` or `signaling media-job`.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl ChildCommand {
    /// This very executable, with `args`: the binaries that run workers also carry the child.
    pub fn current_exe(args: &[&str]) -> std::io::Result<ChildCommand> {
        Ok(ChildCommand {
            program: std::env::current_exe()?,
            args: args.iter().map(|a| a.to_string()).collect(),
        })
    }
}

/// How a child ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum ChildFailure {
    /// The pipeline refused the file or failed, and said why.
    #[error("{message}")]
    Reported { code: String, message: String, input_error: bool },
    #[error("the job needed more than its memory limit of {limit_mb} MiB")]
    MemoryLimit { limit_mb: u64 },
    #[error("the job used more than its CPU time limit of {limit_secs} s")]
    CpuLimit { limit_secs: u64 },
    #[error("the job ran longer than its limit of {limit_secs} s and was stopped")]
    WallTimeout { limit_secs: u64 },
    /// Killed by a signal it did not bring on itself: the kernel's OOM killer, an operator.
    #[error("the job's process was killed (signal {signal})")]
    Killed { signal: i32 },
    /// Crashed: a decoder bug that this file triggers (segmentation fault, stack overflow, abort).
    #[error("the job's process crashed (signal {signal}): {stderr_tail}")]
    Crashed { signal: i32, stderr_tail: String },
    #[error("cannot start the job's process {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It exited without saying how it went: a bug of ours.
    #[error("the job's process exited with {status} without a result: {stderr_tail}")]
    NoResult { status: String, stderr_tail: String },
}

impl ChildFailure {
    /// The code stored on the job, and whether the file is at fault (then it is never retried).
    pub fn code_and_blame(&self) -> (&str, bool) {
        match self {
            ChildFailure::Reported { code, input_error, .. } => (code, *input_error),
            // Limits are sized for every file we accept: a file that needs more is refused.
            ChildFailure::MemoryLimit { .. } => ("media_memory_limit", true),
            ChildFailure::CpuLimit { .. } => ("media_cpu_limit", true),
            // A crash in a decoder happens again on the same bytes.
            ChildFailure::Crashed { .. } => ("media_crashed", true),
            // A slow machine or an outside kill is ours: try again.
            ChildFailure::WallTimeout { .. } => ("media_timeout", false),
            ChildFailure::Killed { .. } => ("worker_killed", false),
            ChildFailure::Spawn { .. } => ("worker_spawn_failed", false),
            ChildFailure::NoResult { .. } => ("worker_no_result", false),
        }
    }
}

/// The environment variables a child keeps: logging, and the CPU tuning some machines need.
const CHILD_ENV: &[&str] = &["PATH", "RUST_LOG", "RUST_BACKTRACE", "OMP_NUM_THREADS", "TZ"];

/// The last few kilobytes of a child's standard error, for the job's message and the logs.
const STDERR_TAIL_BYTES: usize = 4096;

/// Runs one job in a child process and waits for it. `on_progress` gets percentages as they come.
/// Dropping the returned future kills the child (a lost lease, a shutdown).
pub async fn run_child(
    command: &ChildCommand,
    limits: &JobLimits,
    request: &ChildRequest,
    mut on_progress: impl FnMut(u8),
) -> Result<ChildResult, ChildFailure> {
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(request.scratch_dir())
        .kill_on_drop(true)
        // The server's environment holds its secrets (API key, token and link keys, database
        // and storage credentials). A decoder exploited by a file could write them into the
        // outputs that get published: the child gets none of it.
        .env_clear()
        .envs(std::env::vars_os().filter(|(name, _)| {
            name.to_str().is_some_and(|name| CHILD_ENV.contains(&name) || name.starts_with("OPENBLAS_"))
        }))
        // glibc keeps one heap arena per thread: with many decoder threads, reserved but unused
        // arenas would count against the memory limit.
        .env("MALLOC_ARENA_MAX", "2");
    let rlimits = RLimits::from(limits);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (prctl, setpgid, setrlimit) on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || rlimits.apply());
    }
    let mut child =
        cmd.spawn().map_err(|source| ChildFailure::Spawn { program: command.program.clone(), source })?;

    let request_json = serde_json::to_vec(request).map_err(|err| ChildFailure::NoResult {
        status: "not started".into(),
        stderr_tail: format!("cannot encode the request: {err}"),
    })?;
    // The pipes exist: they were asked for above.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut tail = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buffer[..n]);
            if tail.len() > STDERR_TAIL_BYTES {
                tail.drain(..tail.len() - STDERR_TAIL_BYTES);
            }
        }
        String::from_utf8_lossy(&tail).into_owned()
    });
    // A child that dies before reading its request closes the pipe; its exit status says more.
    let _ = stdin.write_all(&request_json).await;
    drop(stdin);

    let wall = Duration::from_secs(limits.wall_secs.max(1));
    let mut last_message = None;
    let read_messages = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            crate::child::absorb_line(&line, &mut last_message, &mut on_progress);
        }
        child.wait().await
    };
    let status = match tokio::time::timeout(wall, read_messages).await {
        Ok(status) => status,
        Err(_) => {
            // `child` is still owned here: kill it and reap it before saying why.
            let _ = child.kill().await;
            stderr_task.abort();
            return Err(ChildFailure::WallTimeout { limit_secs: limits.wall_secs });
        }
    };
    let stderr_tail = stderr_task.await.unwrap_or_default();
    let status = status.map_err(|err| ChildFailure::NoResult {
        status: err.to_string(),
        stderr_tail: stderr_tail.clone(),
    })?;
    classify(status, last_message, stderr_tail, limits)
}

fn classify(
    status: std::process::ExitStatus,
    last_message: Option<ChildMessage>,
    stderr_tail: String,
    limits: &JobLimits,
) -> Result<ChildResult, ChildFailure> {
    match (status.code(), status.signal(), last_message) {
        (Some(0), _, Some(ChildMessage::Done { result })) => Ok(result),
        (Some(EXIT_OUT_OF_MEMORY), _, _) => Err(ChildFailure::MemoryLimit { limit_mb: limits.memory_mb }),
        // C libraries that cannot allocate say so on stderr and fail with a generic error.
        (Some(_), _, Some(ChildMessage::Failed { input_error: false, .. }))
            if says_out_of_memory(&stderr_tail) =>
        {
            Err(ChildFailure::MemoryLimit { limit_mb: limits.memory_mb })
        }
        (Some(_), _, Some(ChildMessage::Failed { code, message, input_error })) => {
            Err(ChildFailure::Reported { code, message, input_error })
        }
        (_, Some(libc::SIGXCPU), _) => Err(ChildFailure::CpuLimit { limit_secs: limits.cpu_secs }),
        // Rust aborts when an allocation fails; under our limit that is the limit.
        (_, Some(libc::SIGABRT), _) if says_out_of_memory(&stderr_tail) => {
            Err(ChildFailure::MemoryLimit { limit_mb: limits.memory_mb })
        }
        (_, Some(signal), _) if signal == libc::SIGKILL || signal == libc::SIGTERM => {
            Err(ChildFailure::Killed { signal })
        }
        (_, Some(signal), _) => Err(ChildFailure::Crashed { signal, stderr_tail: one_line(&stderr_tail) }),
        (code, _, _) => Err(ChildFailure::NoResult {
            status: code.map_or_else(|| "no status".to_owned(), |code| format!("exit status {code}")),
            stderr_tail: one_line(&stderr_tail),
        }),
    }
}

/// Whether a child's standard error reports a refused allocation: Rust's abort message, x264's,
/// FFmpeg's and glibc's wordings.
fn says_out_of_memory(stderr: &str) -> bool {
    [
        "memory allocation of",
        "malloc of size",
        "Cannot allocate memory",
        "out of memory",
        "Insufficient memory",
    ]
    .iter()
    .any(|marker| stderr.contains(marker))
}

/// The last line of a child's standard error that says something, short enough for a job row.
fn one_line(stderr: &str) -> String {
    let line = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default().trim();
    line.chars().take(300).collect()
}

/// The limits as `setrlimit` takes them, computed before the fork.
#[derive(Clone, Copy)]
struct RLimits {
    data: libc::rlim_t,
    cpu: libc::rlim_t,
    files: libc::rlim_t,
    fsize: libc::rlim_t,
}

impl From<&JobLimits> for RLimits {
    fn from(limits: &JobLimits) -> Self {
        let mib = |value: u64| value.saturating_mul(1 << 20) as libc::rlim_t;
        RLimits {
            data: mib(limits.memory_mb.max(16)),
            cpu: limits.cpu_secs.max(1) as libc::rlim_t,
            files: limits.open_files.max(8) as libc::rlim_t,
            fsize: mib(limits.output_mb.max(1)),
        }
    }
}

impl RLimits {
    fn apply(self) -> std::io::Result<()> {
        let set = |resource, soft: libc::rlim_t, hard: libc::rlim_t| {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            // SAFETY: setrlimit reads the struct it is given and nothing else.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        // SAFETY: plain system calls on this process, with constant arguments.
        unsafe {
            // Die with the worker: a child must never outlive the process that leases its job.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // Its own process group: a Ctrl-C meant for the server is not delivered to it first.
            libc::setpgid(0, 0);
        }
        set(libc::RLIMIT_DATA, self.data, self.data)?;
        // SIGXCPU at the soft limit; the hard limit kills a child that ignores it.
        set(libc::RLIMIT_CPU, self.cpu, self.cpu + 5)?;
        set(libc::RLIMIT_NOFILE, self.files, self.files)?;
        set(libc::RLIMIT_FSIZE, self.fsize, self.fsize)?;
        set(libc::RLIMIT_CORE, 0, 0)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(raw: i32) -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(raw)
    }

    fn exited(code: i32) -> std::process::ExitStatus {
        status(code << 8)
    }

    fn code(result: Result<ChildResult, ChildFailure>) -> (String, bool) {
        let failure = result.expect_err("a failure");
        let (code, blame) = failure.code_and_blame();
        (code.to_owned(), blame)
    }

    #[test]
    fn endings_are_told_apart() {
        let limits = JobLimits::default();
        let failed =
            ChildMessage::Failed { code: "corrupt_media".into(), message: "cut".into(), input_error: true };
        let check = |raw, message: Option<ChildMessage>, stderr: &str, expected: (&str, bool)| {
            let (code, blame) = code(classify(raw, message, stderr.to_owned(), &limits));
            assert_eq!((code.as_str(), blame), expected, "{stderr}");
        };
        check(exited(2), Some(failed), "", ("corrupt_media", true));
        check(exited(EXIT_OUT_OF_MEMORY), None, "", ("media_memory_limit", true));
        check(
            status(libc::SIGABRT),
            None,
            "memory allocation of 4294967296 bytes failed\n",
            ("media_memory_limit", true),
        );
        check(status(libc::SIGXCPU), None, "", ("media_cpu_limit", true));
        check(
            status(libc::SIGSEGV),
            None,
            "thread 'main' has overflowed its stack\n",
            ("media_crashed", true),
        );
        check(status(libc::SIGKILL), None, "", ("worker_killed", false));
        check(exited(0), None, "", ("worker_no_result", false));
        let internal = ChildMessage::Failed {
            code: "media_internal".into(),
            message: "x264".into(),
            input_error: false,
        };
        check(
            exited(2),
            Some(internal.clone()),
            "x264 [error]: malloc of size 2054656 failed\n",
            ("media_memory_limit", true),
        );
        check(exited(2), Some(internal), "", ("media_internal", false));
        check(exited(101), None, "panicked at src/x.rs", ("worker_no_result", false));
    }
}
