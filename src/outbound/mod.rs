//! Outside effects. Everything that leaves the service for another system goes through
//! the domain's outbox (or a durable cursor) and is carried by a courier here: signed
//! webhooks today, the 12308 hotline and messenger bridges build on the same seam.

pub mod webhooks;

pub use webhooks::{sign, WebhookCourier};
