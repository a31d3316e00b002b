//! The media plane's own thread: a single-threaded tokio runtime that runs the socket readers
//! and every room task. A datagram read and the room that handles it are then on one thread,
//! with no wake-up across the server's worker threads and no work stealing between them, and
//! the HTTP and WebSocket work of `signaling` stays on its own runtime. `SfuConfig::media_thread`
//! turns it off (everything on the caller's runtime); docs/benchmarks.md has both figures.

use tokio::sync::oneshot;

use crate::error::SfuError;

/// The thread runs until this is dropped (with the SFU's last handle).
pub struct MediaThread {
    pub handle: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
}

impl MediaThread {
    pub fn start() -> Result<MediaThread, SfuError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| SfuError::Io(format!("media runtime: {err}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sfu-media".into())
            .spawn(move || {
                // Ends when the sender is dropped; the runtime's tasks are dropped with it.
                let _ = runtime.block_on(stopped);
            })
            .map_err(|err| SfuError::Io(format!("media thread: {err}")))?;
        Ok(MediaThread { handle, _stop: stop })
    }
}
