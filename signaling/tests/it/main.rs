//! Integration tests of the signaling server: the real `run` on a loopback socket, over SQLite and a
//! real PostgreSQL, driven over HTTP like the class backend and users do.

mod support;

mod auth;
mod binary;
mod capabilities;
mod connections;
mod e2ee;
mod errors;
mod hands;
mod hostile_media;
mod limits;
mod media;
mod media_page;
mod media_support;
mod moderation;
mod openapi;
mod ops;
mod outbox;
mod phone_media;
mod privacy;
mod rate_limits;
mod resume;
mod scaleout;
mod turn;
mod tus;
mod uploads;
mod visio;
