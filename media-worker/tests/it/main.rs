//! Integration tests of the media pipeline on real media: the test media fetched by
//! `scripts/install-deps.sh --test-media`, and inputs made with the `ffmpeg` CLI.

mod bad_inputs;
mod cli;
mod faces;
mod phone_formats;
mod photo;
mod queue;
mod sandbox;
mod support;
mod video;
mod worker;
