//! The child side of a job: what runs inside the process that [`crate::sandbox`] starts.
//!
//! FFmpeg, OpenCV, libheif and `image` decode hostile files; a bug in any of them (a stack
//! overflow, a use after free, an allocation of gigabytes) must take down one job, never the
//! server and its calls. So the worker writes a [`ChildRequest`] on the child's standard input
//! and the child, with its resource limits already set, probes the file, rewrites the original
//! without metadata ([`crate::original`]), runs the pipeline on that clean original and writes its
//! outputs into the job's scratch directory. It reports on standard output, one JSON
//! [`ChildMessage`] per line: progress, then `done` or `failed`. The child touches no database,
//! store or network: it reads one directory and writes into it.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use models::media::MediaKind;
use serde::{Deserialize, Serialize};

use crate::error::MediaError;
use crate::queue::{JobSpec, OutputStats};
use crate::worker::{FacesFile, WorkerConfig};

/// Exit status of a child that failed on a file; its last message says why.
pub const EXIT_FAILED: i32 = 2;
/// Exit status of a child that ran out of memory under its limit (an allocation refused).
pub const EXIT_OUT_OF_MEMORY: i32 = 3;

/// The file names a child writes in its scratch directory.
pub const CLEAN_ORIGINAL: &str = "original.clean";
pub const POSTER: &str = "poster.jpg";
pub const THUMBNAIL: &str = "thumb.jpg";
pub const FACES: &str = "faces.json";

/// The published file's name for a medium of `kind`.
pub fn media_file_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Video => "media.mp4",
        MediaKind::Photo => "photo.jpg",
    }
}

/// What the worker asks of a child.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildRequest {
    /// The downloaded original; its directory is the scratch directory.
    pub input: PathBuf,
    pub spec: JobSpec,
    pub worker: WorkerConfig,
}

impl ChildRequest {
    pub fn scratch_dir(&self) -> &Path {
        self.input.parent().unwrap_or(Path::new("."))
    }
}

/// What a child produced besides its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildResult {
    #[serde(flatten)]
    pub stats: OutputStats,
    /// Whether `poster.jpg` was written (videos only).
    pub has_poster: bool,
    /// Whether `original.clean` was written. When it was not (a video that cannot be remuxed
    /// as it is), the worker keeps the published version as the original.
    pub has_clean_original: bool,
}

/// One line of a child's standard output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChildMessage {
    Progress { percent: u8 },
    Done { result: ChildResult },
    Failed { code: String, message: String, input_error: bool },
}

/// The entry point of `media-worker job` and `signaling media-job`: reads the request from
/// standard input, runs it, reports on standard output. Returns the process's exit status.
pub fn main() -> i32 {
    let mut text = String::new();
    // A request is a few kilobytes; a megabyte is plenty and bounds a runaway parent.
    if let Err(err) = std::io::stdin().lock().take(1 << 20).read_to_string(&mut text) {
        return report_failure("child_protocol", &format!("cannot read the request: {err}"), false);
    }
    let request: ChildRequest = match serde_json::from_str(&text) {
        Ok(request) => request,
        Err(err) => return report_failure("child_protocol", &format!("bad request: {err}"), false),
    };
    if let Err(err) = confine(&request) {
        return report_failure("child_sandbox", &format!("cannot confine the job: {err}"), false);
    }
    match run(&request) {
        Ok(result) => {
            send(&ChildMessage::Done { result });
            0
        }
        Err(err) if is_out_of_memory(&err) => {
            report_failure("media_memory_limit", &err.to_string(), true);
            EXIT_OUT_OF_MEMORY
        }
        Err(err) => report_failure(err.code(), &err.to_string(), err.is_input_error()),
    }
}

fn report_failure(code: &str, message: &str, input_error: bool) -> i32 {
    send(&ChildMessage::Failed { code: code.to_owned(), message: message.to_owned(), input_error });
    EXIT_FAILED
}

fn send(message: &ChildMessage) {
    // A message is one line: serde_json escapes every newline inside strings.
    if let Ok(line) = serde_json::to_string(message) {
        let mut stdout = std::io::stdout().lock();
        // The parent may be gone (it killed us or died): nothing is left to tell anyone.
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    }
}

/// Confines this process with Landlock before any user byte is read: from then on it can read
/// only the system's libraries, the face model and its own scratch directory, and write only
/// there. A demuxer or decoder tricked into opening another file (another class's video, the
/// server's database, `/proc/<server>/environ`) is refused by the kernel. On a kernel without
/// Landlock this does nothing and says so in the log; the allowlists still apply.
fn confine(request: &ChildRequest) -> Result<(), landlock::RulesetError> {
    use landlock::{
        path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
    };
    let abi = ABI::V5;
    let read_only = [
        "/usr",
        "/lib",
        "/lib64",
        "/etc/ld.so.cache",
        "/etc/localtime",
        "/etc/OpenCL",
        "/proc/self",
        "/proc/cpuinfo",
        "/sys/devices/system/cpu",
        "/sys/fs/cgroup",
        "/dev/urandom",
    ];
    let model = request.worker.model_path();
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(read_only, AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules([model.as_path()], AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(["/dev/null"], AccessFs::from_read(abi) | AccessFs::WriteFile))?
        .add_rules(path_beneath_rules([request.scratch_dir()], AccessFs::from_all(abi)))?
        .restrict_self()?;
    if status.ruleset == RulesetStatus::NotEnforced {
        tracing::warn!("this kernel has no Landlock: the job runs without a file system sandbox");
    }
    Ok(())
}

/// Whether an error is an allocation refused under the memory limit, in C code that reports it
/// instead of aborting (FFmpeg's `ENOMEM`, OpenCV's "insufficient memory").
fn is_out_of_memory(err: &MediaError) -> bool {
    match err {
        MediaError::OutOfMemory { .. } => true,
        MediaError::Ffmpeg { source: ffmpeg_next::Error::Other { errno }, .. } => *errno == libc::ENOMEM,
        MediaError::FaceDetection(err) => err.code == opencv::core::StsNoMem,
        _ => false,
    }
}

fn run(request: &ChildRequest) -> Result<ChildResult, MediaError> {
    let config = request.worker.process_config(&request.spec);
    let scratch = request.scratch_dir();
    let info = crate::probe(&request.input, &config.limits)?;
    let found = match info.kind {
        crate::MediaKind::Photo => MediaKind::Photo,
        crate::MediaKind::Video => MediaKind::Video,
    };
    if found != request.spec.declared_kind {
        return Err(MediaError::Unsupported {
            reason: format!(
                "the file is a {}, but a {} was announced",
                found.as_str(),
                request.spec.declared_kind.as_str()
            ),
        });
    }
    send(&ChildMessage::Progress { percent: 1 });

    let clean = scratch.join(CLEAN_ORIGINAL);
    let has_clean_original = match crate::original::sanitize(&request.input, &clean, &info, &config.limits) {
        Ok(()) => true,
        // A file the strict walkers refuse may still decode: it is then processed as it is, and
        // the worker stores the published version (which has no metadata) as its original.
        Err(err) if err.is_input_error() => {
            tracing::info!(cause = %err, "the original cannot be rewritten losslessly");
            false
        }
        Err(err) => return Err(err),
    };
    let source = if has_clean_original { clean.as_path() } else { request.input.as_path() };

    let output = scratch.join(media_file_name(found));
    let mut last_percent = 1u8;
    let (processed_info, output_meta) = crate::process(source, &output, &config, &mut |fraction| {
        let percent = (fraction * 100.0).clamp(1.0, 99.0) as u8;
        if percent > last_percent {
            last_percent = percent;
            send(&ChildMessage::Progress { percent });
        }
        ControlFlow::Continue(())
    })?;
    let write = |name: &str, bytes: &[u8]| {
        let path = scratch.join(name);
        std::fs::write(&path, bytes).map_err(|source| MediaError::Io { path, source })
    };
    if !output_meta.poster_jpeg.is_empty() {
        write(POSTER, &output_meta.poster_jpeg)?;
    }
    write(THUMBNAIL, &output_meta.thumbnail_jpeg)?;
    let faces = serde_json::to_vec(&FacesFile { frames: output_meta.faces.clone() })
        .map_err(|err| MediaError::InvalidConfig(format!("cannot write faces.json: {err}")))?;
    write(FACES, &faces)?;
    Ok(ChildResult {
        stats: OutputStats {
            width: output_meta.width,
            height: output_meta.height,
            duration_s: processed_info.duration.map(|d| d.as_secs_f64()),
            n_frames: output_meta.n_frames,
            n_face_detections: output_meta.n_face_detections,
            n_blurred_frames: output_meta.n_blurred_frames,
        },
        has_poster: !output_meta.poster_jpeg.is_empty(),
        has_clean_original,
    })
}

/// Takes one line of a child's standard output: progress goes to `on_progress`, a `done` or
/// `failed` message becomes `last`. Lines that are not messages (a C library printing on
/// standard output) are ignored.
pub fn absorb_line(line: &str, last: &mut Option<ChildMessage>, on_progress: &mut impl FnMut(u8)) {
    match serde_json::from_str::<ChildMessage>(line) {
        Ok(ChildMessage::Progress { percent }) => on_progress(percent),
        Ok(message) => *last = Some(message),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_each_and_junk_is_ignored() {
        let done = ChildMessage::Done {
            result: ChildResult {
                stats: OutputStats {
                    width: 1280,
                    height: 720,
                    duration_s: Some(2.5),
                    n_frames: 75,
                    n_face_detections: 3,
                    n_blurred_frames: 40,
                },
                has_poster: true,
                has_clean_original: true,
            },
        };
        let failed = ChildMessage::Failed {
            code: "corrupt_media".into(),
            message: "line one\nline two".into(),
            input_error: true,
        };
        for message in [&done, &failed] {
            let line = serde_json::to_string(message).expect("serialises");
            assert!(!line.contains('\n'));
        }
        let text = format!(
            "{}\nsome library's noise\n{}\n{}\n",
            serde_json::to_string(&ChildMessage::Progress { percent: 40 }).expect("json"),
            serde_json::to_string(&ChildMessage::Progress { percent: 80 }).expect("json"),
            serde_json::to_string(&done).expect("json"),
        );
        let mut seen = Vec::new();
        let mut last = None;
        for line in text.lines() {
            absorb_line(line, &mut last, &mut |percent| seen.push(percent));
        }
        assert_eq!(seen, vec![40, 80]);
        assert_eq!(last, Some(done));
    }
}
