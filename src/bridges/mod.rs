//! Messenger bridges, the server's side: each bridge crate (`bots/*`) speaks its
//! messenger and defines the port it needs; the adapters here implement those ports
//! with the domain's services and are started by the wiring (`crate::server`).

pub mod telegram;
