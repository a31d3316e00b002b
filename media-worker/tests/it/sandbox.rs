//! A job's child process as the worker starts it: confined to its scratch directory, and ended
//! with a clear code when it crosses a limit.

use std::path::{Path, PathBuf};

use media_worker::child::ChildRequest;
use media_worker::queue::JobSpec;
use media_worker::sandbox::{run_child, ChildCommand, ChildFailure, JobLimits};
use media_worker::worker::{WorkerConfig, JOB_SUBCOMMAND};
use models::media::MediaKind;

use crate::support::{ffmpeg, path_str, tempdir, test_media};

fn command() -> ChildCommand {
    ChildCommand { program: env!("CARGO_BIN_EXE_media-worker").into(), args: vec![JOB_SUBCOMMAND.to_owned()] }
}

fn request(input: PathBuf, kind: MediaKind) -> ChildRequest {
    let spec = JobSpec {
        input_key: "originals/c/m".into(),
        declared_kind: kind,
        blur_faces: false,
        manual_regions: Vec::new(),
        max_duration_s: 600,
    };
    ChildRequest { input, spec, worker: WorkerConfig::default() }
}

async fn run(
    input: PathBuf,
    kind: MediaKind,
    limits: JobLimits,
) -> Result<media_worker::child::ChildResult, ChildFailure> {
    run_child(&command(), &limits, &request(input, kind), |_| {}).await
}

fn scratch_with(dir: &Path, source: &Path, link: bool) -> PathBuf {
    let scratch = dir.join(if link { "linked" } else { "copied" });
    std::fs::create_dir_all(&scratch).unwrap();
    let input = scratch.join("input");
    if link {
        std::os::unix::fs::symlink(source, &input).unwrap();
    } else {
        std::fs::copy(source, &input).unwrap();
    }
    input
}

#[tokio::test]
async fn a_child_reads_its_scratch_directory_and_nothing_else() {
    let dir = tempdir();
    let photo = test_media("astronaut.png");
    let copied = scratch_with(dir.path(), &photo, false);
    let result =
        run(copied.clone(), MediaKind::Photo, JobLimits::default()).await.expect("the photo is processed");
    assert_eq!((result.stats.width, result.stats.height, result.has_clean_original), (512, 512, true));
    for name in ["photo.jpg", "thumb.jpg", "faces.json", "original.clean"] {
        assert!(copied.with_file_name(name).is_file(), "{name} written");
    }
    // The same photo outside the scratch directory, reached through a link: the kernel refuses.
    if !kernel_has_landlock() {
        // Nothing to check on such a kernel: the child says so in its log and relies on the
        // allowlists alone. The machines this project runs on (and CI) have Landlock.
        eprintln!("this kernel has no Landlock: the file system sandbox is not tested here");
        return;
    }
    let linked = scratch_with(dir.path(), &photo, true);
    let failure = run(linked, MediaKind::Photo, JobLimits::default()).await.expect_err("outside the sandbox");
    let (code, blame) = failure.code_and_blame();
    assert_eq!((code, blame), ("media_io", false), "{failure}");
    assert!(failure.to_string().contains("ermission denied"), "{failure}");
}

/// Whether the kernel offers Landlock: `landlock_create_ruleset` with the version flag answers
/// the ABI version.
fn kernel_has_landlock() -> bool {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_long = 1;
    // SAFETY: with a null attribute and size 0, the call only reports the ABI version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi >= 1
}

fn long_video(dir: &Path) -> PathBuf {
    let path = dir.join("scratch-video");
    std::fs::create_dir_all(&path).unwrap();
    let input = path.join("input");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=1280x720:r=30:d=40",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-f",
        "mp4",
        path_str(&input),
    ]);
    input
}

#[tokio::test]
async fn limits_end_a_child_with_their_own_codes() {
    let dir = tempdir();
    let video = long_video(dir.path());
    let failure = run(video.clone(), MediaKind::Video, JobLimits { wall_secs: 1, ..JobLimits::default() })
        .await
        .expect_err("over its wall time");
    assert_eq!(failure.code_and_blame(), ("media_timeout", false), "{failure}");
    let failure = run(video, MediaKind::Video, JobLimits { cpu_secs: 1, ..JobLimits::default() })
        .await
        .expect_err("over its CPU time");
    assert_eq!(failure.code_and_blame(), ("media_cpu_limit", true), "{failure}");

    let scratch = dir.path().join("scratch-photo");
    std::fs::create_dir_all(&scratch).unwrap();
    let big = scratch.join("input");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=9000x9000",
        "-frames:v",
        "1",
        "-f",
        "image2",
        "-c:v",
        "png",
        path_str(&big),
    ]);
    let failure = run(big, MediaKind::Photo, JobLimits { memory_mb: 200, ..JobLimits::default() })
        .await
        .expect_err("over its memory");
    assert_eq!(failure.code_and_blame(), ("media_memory_limit", true), "{failure}");
}

/// The environment a running job child started with, found by its scratch directory.
fn child_environ(scratch: &Path) -> Option<String> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let cwd = std::fs::read_link(entry.path().join("cwd")).ok();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cwd.as_deref() == Some(scratch)
            && cmdline.split(|b| *b == 0).any(|arg| arg == JOB_SUBCOMMAND.as_bytes())
        {
            return std::fs::read(entry.path().join("environ"))
                .ok()
                .map(|e| String::from_utf8_lossy(&e).into_owned());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_inherits_none_of_the_servers_environment() {
    // Cargo gives this test process CARGO_* variables, as a server has its secrets (KLASS_*).
    assert!(std::env::vars().any(|(name, _)| name.starts_with("CARGO_")));
    let dir = tempdir();
    let video = long_video(dir.path());
    let scratch = video.parent().expect("a scratch directory").to_path_buf();
    let job = tokio::spawn(run(video, MediaKind::Video, JobLimits::default()));
    let started = std::time::Instant::now();
    let environ = loop {
        if let Some(environ) = child_environ(&scratch) {
            break environ;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no job child seen");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let names: Vec<&str> =
        environ.split('\0').filter_map(|pair| pair.split_once('=').map(|(name, _)| name)).collect();
    assert!(!names.iter().any(|name| name.starts_with("CARGO_") || *name == "HOME"), "{names:?}");
    assert!(names.contains(&"MALLOC_ARENA_MAX"), "{names:?}");
    let result = job.await.expect("the job task").expect("the video is processed");
    assert_eq!(result.stats.height, 720);
}
