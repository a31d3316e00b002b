//! The face detector on its own thread, so that detection overlaps decoding, blurring and
//! encoding instead of stopping them: the video thread sends a packed copy of each frame that the
//! tracker wants examined and goes on; results come back in the order frames were sent.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::error::{MediaError, Result};
use crate::face::{Detection, FaceConfig, FaceDetector};

/// Frames waiting for the detector. A few are enough to keep it busy; more would only hold
/// memory while the video thread waits anyway.
const QUEUE_DEPTH: usize = 2;

struct Request {
    frame_idx: u64,
    i420: Vec<u8>,
    width: u32,
    height: u32,
}

/// What the detector found on one frame.
pub(super) struct Found {
    pub(super) frame_idx: u64,
    pub(super) detections: Result<Vec<Detection>>,
}

pub(super) struct DetectorThread {
    requests: Option<mpsc::SyncSender<Request>>,
    results: mpsc::Receiver<Found>,
    handle: Option<JoinHandle<()>>,
    /// Frames sent and not answered yet, oldest first.
    in_flight: VecDeque<u64>,
}

impl DetectorThread {
    /// Starts the thread and loads the model there; a model that cannot be loaded fails here,
    /// before any frame is decoded.
    pub(super) fn start(config: FaceConfig) -> Result<Self> {
        let (request_tx, request_rx) = mpsc::sync_channel::<Request>(QUEUE_DEPTH);
        let (result_tx, result_rx) = mpsc::channel::<Found>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let handle = std::thread::Builder::new()
            .name("face-detector".into())
            .spawn(move || {
                let mut detector = match FaceDetector::new(config) {
                    Ok(detector) => {
                        let _ = ready_tx.send(Ok(()));
                        detector
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                // Ends when the video thread drops its sender.
                for request in request_rx {
                    let detections = detector.detect_i420(&request.i420, request.width, request.height);
                    if result_tx.send(Found { frame_idx: request.frame_idx, detections }).is_err() {
                        return;
                    }
                }
            })
            .map_err(|err| {
                MediaError::InvalidConfig(format!("cannot start the face detector thread: {err}"))
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(MediaError::InvalidConfig("the face detector thread died while loading".into()))
            }
        }
        Ok(Self {
            requests: Some(request_tx),
            results: result_rx,
            handle: Some(handle),
            in_flight: VecDeque::new(),
        })
    }

    /// Sends a frame; blocks only while the detector already has [`QUEUE_DEPTH`] frames waiting.
    pub(super) fn send(&mut self, frame_idx: u64, i420: Vec<u8>, width: u32, height: u32) -> Result<()> {
        let sender = self.requests.as_ref().ok_or_else(died)?;
        sender.send(Request { frame_idx, i420, width, height }).map_err(|_| died())?;
        self.in_flight.push_back(frame_idx);
        Ok(())
    }

    pub(super) fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// The next answer if it is there (`wait` false), or once it comes (`wait` true).
    pub(super) fn receive(&mut self, wait: bool) -> Result<Option<Found>> {
        if self.in_flight.is_empty() {
            return Ok(None);
        }
        let found = if wait {
            self.results.recv().map_err(|_| died())?
        } else {
            match self.results.try_recv() {
                Ok(found) => found,
                Err(mpsc::TryRecvError::Empty) => return Ok(None),
                Err(mpsc::TryRecvError::Disconnected) => return Err(died()),
            }
        };
        self.in_flight.pop_front();
        Ok(Some(found))
    }
}

fn died() -> MediaError {
    MediaError::InvalidConfig("the face detector thread stopped".into())
}

impl Drop for DetectorThread {
    fn drop(&mut self) {
        // Closing the request channel ends the thread's loop after the frame it is on.
        self.requests = None;
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
