//! Outside effects. Everything that leaves the service for another system goes through
//! the domain's outbox (or a durable cursor) and is carried by a courier here: signed
//! webhooks and the 12308 hotline; messenger bridges build on the same seams.

pub mod hotline;
pub mod webhooks;

use std::time::Duration;

use async_trait::async_trait;

use crate::config::Config;
use crate::domain::model::OutboxRow;
use crate::domain::outbox::{Courier, Delivery};
use crate::domain::webhooks::HOTLINE;
pub use hotline::HotlineCourier;
pub use webhooks::{sign, WebhookCourier};

/// Hands each outbox row to the courier of its destination.
pub struct Couriers {
    webhooks: WebhookCourier,
    hotline: Option<HotlineCourier>,
}

impl Couriers {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lingshi/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Couriers {
            webhooks: WebhookCourier::new(config, http.clone())?,
            hotline: HotlineCourier::new(config, http),
        })
    }
}

#[async_trait]
impl Courier for Couriers {
    async fn deliver(&self, row: &OutboxRow) -> Delivery {
        if row.destination == HOTLINE {
            return match &self.hotline {
                Some(h) => h.deliver(row).await,
                None => Delivery::Retry {
                    after: Some(Duration::from_secs(600)),
                    error: "no hotline is configured".into(),
                },
            };
        }
        self.webhooks.deliver(row).await
    }
}
