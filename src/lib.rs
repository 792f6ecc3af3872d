//! Lingshi: a chat-first consular helpdesk. Citizens abroad write to their embassy or
//! consulate; agents answer in a console. See ARCHITECTURE.md for the module map and
//! the path of one message from a citizen's socket to an agent's screen.

pub mod app;
pub mod assembly;
pub mod bridges;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod outbound;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod wire;
