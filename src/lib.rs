//! Lingshi: a chat-first consular helpdesk. Citizens abroad write to their embassy or
//! consulate; agents answer in a console. See ARCHITECTURE.md for the module map and
//! the path of one message from a citizen's socket to an agent's screen.

pub mod attachments;
pub mod auth;
pub mod chat;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod hub;
pub mod kb;
pub mod metrics;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod views;
