//! Prometheus metrics of media jobs. Registered on the caller's registry: `signaling` exports them
//! beside its own when it runs workers in-process, `media-worker work` serves them on its own port.
//!
//! Label values come from small fixed sets (kind, result, state), never an id.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::queue::JobState;

#[derive(Clone)]
pub struct WorkerMetrics {
    /// Finished attempts by kind and result: `done`, `refused` (the input's fault), `retried`,
    /// `failed`, `lease_lost`, `released`.
    pub jobs: IntCounterVec,
    /// Jobs in the queue by state, as last counted.
    pub queue: IntGaugeVec,
    pub running: IntGauge,
    pub job_duration: HistogramVec,
    pub frames: IntCounter,
    pub faces_blurred: IntCounter,
    /// Seconds of video transcoded per second of wall time.
    pub realtime_factor: Histogram,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    // Registered once per registry; a second worker pool on the same registry reuses the first's.
    match registry.register(Box::new(collector.clone())) {
        Ok(()) | Err(prometheus::Error::AlreadyReg) => collector,
        Err(err) => panic!("invalid metric definition: {err}"),
    }
}

impl WorkerMetrics {
    pub fn new(registry: &Registry) -> WorkerMetrics {
        // Static definitions with valid names and labels cannot fail.
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let counter =
            |name: &str, help: &str| register(registry, IntCounter::new(name, help).expect("valid metric"));
        WorkerMetrics {
            jobs: counter_vec(
                "klass_media_jobs_total",
                "Media job attempts that ended, by kind and result",
                &["kind", "result"],
            ),
            queue: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("klass_media_queue_jobs", "Media jobs by state, as last counted"),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            running: register(
                registry,
                IntGauge::new("klass_media_jobs_running", "Media jobs this process is working on")
                    .expect("valid metric"),
            ),
            job_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "klass_media_job_duration_seconds",
                        "Wall time of media jobs that finished",
                    )
                    .buckets(vec![0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0]),
                    &["kind"],
                )
                .expect("valid metric"),
            ),
            frames: counter(
                "klass_media_frames_processed_total",
                "Video frames encoded and photos processed",
            ),
            faces_blurred: counter("klass_media_faces_blurred_total", "Faces the detector found and blurred"),
            realtime_factor: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "klass_media_transcode_realtime_factor",
                        "Seconds of video transcoded per second of wall time",
                    )
                    .buckets(vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
                )
                .expect("valid metric"),
            ),
        }
        .with_zeros()
    }

    /// Every series starts at zero, so that rates and alerts see it before the first event.
    fn with_zeros(self) -> WorkerMetrics {
        for kind in ["photo", "video"] {
            for result in ["done", "refused", "retried", "failed", "lease_lost", "released"] {
                self.jobs.with_label_values(&[kind, result]);
            }
            self.job_duration.with_label_values(&[kind]);
        }
        self.set_queue(&[]);
        self
    }

    pub fn set_queue(&self, counts: &[(JobState, u64)]) {
        for state in [JobState::Queued, JobState::Running, JobState::Done, JobState::Failed] {
            let n = counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
            self.queue.with_label_values(&[state.as_str()]).set(n as i64);
        }
    }
}
