//! What every adapter holds: the domain, the hub its sockets subscribe to, the
//! configuration and metrics. Built by the wiring (`crate::server`) and handed to the
//! router, the socket tasks and the bridges; it sits below them, so nothing that uses
//! it is imported back.

use std::sync::Arc;

use crate::config::Config;
use crate::domain::Domain;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// One pointer, so every request and every socket task holds a single reference.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

pub struct App {
    pub config: Arc<Config>,
    pub domain: Domain,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(app: App) -> Self {
        AppState(Arc::new(app))
    }
}
