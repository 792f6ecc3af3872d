//! Triage of every citizen message: the classifier (`lingshi-triage`) with the rules
//! built into the binary or an editor's copy read from `triage.rules_file`, re-read when
//! that file changes, so rules change without a rebuild or a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use lingshi_triage::Triage;
use tokio_util::sync::CancellationToken;

use super::model::{TriageInfo, TriageReason};
use super::types::Locale;
use super::{Domain, Principal};
use crate::config::Config;
use crate::error::{AppError, AppResult};

/// Longest text `POST /v1/triage` accepts.
const TEXT_MAX_CHARS: usize = 4000;

/// The classifier in use and where its rules come from.
pub struct TriageState {
    current: RwLock<Arc<Triage>>,
    file: Option<PathBuf>,
    modified: Mutex<Option<SystemTime>>,
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl TriageState {
    /// The built-in rules, or the configured file (which must be valid at start).
    pub fn load(config: &Config) -> anyhow::Result<TriageState> {
        let path = &config.triage.rules_file;
        if path.as_os_str().is_empty() {
            return Ok(TriageState {
                current: RwLock::new(Triage::builtin()),
                file: None,
                modified: Mutex::new(None),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read triage.rules_file {}: {e}", path.display())
        })?;
        let triage = Triage::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("triage.rules_file {}: {e}", path.display()))?;
        Ok(TriageState {
            current: RwLock::new(Arc::new(triage)),
            file: Some(path.clone()),
            modified: Mutex::new(modified(path)),
        })
    }

    pub fn current(&self) -> Arc<Triage> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-read the rules file if it changed; a file that does not compile is reported
    /// and the rules in use are kept.
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.file else { return };
        let now = modified(path);
        {
            let mut seen = self.modified.lock().unwrap_or_else(|p| p.into_inner());
            if now.is_none() || *seen == now {
                return;
            }
            *seen = now;
        }
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| Triage::from_toml(&t).map_err(|e| e.to_string()))
        {
            Ok(t) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(t);
                tracing::info!(file = %path.display(), "triage rules reloaded");
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "triage rules file is invalid; keeping the rules in use")
            }
        }
    }
}

impl Domain {
    /// Classify a citizen's text.
    pub fn assess(&self, text: &str, locale: Option<&Locale>) -> TriageInfo {
        let a = self
            .triage
            .current()
            .classify(text, locale.map(Locale::as_str));
        TriageInfo {
            category: a.category.as_str().to_string(),
            score: a.score,
            reasons: a
                .reasons
                .into_iter()
                .map(|r| TriageReason {
                    kind: r.kind,
                    matched: r.matched,
                    detail: r.detail,
                })
                .collect(),
        }
    }

    /// `POST /v1/triage`: the classifier that runs on messages, with no side effect
    /// (staff and editors test the rules with it).
    pub fn triage_text(
        &self,
        p: &Principal,
        text: &str,
        locale: Option<&Locale>,
    ) -> AppResult<TriageInfo> {
        if p.staff().is_none() {
            return Err(AppError::forbidden("only staff test the triage rules"));
        }
        if text.chars().count() > TEXT_MAX_CHARS {
            return Err(AppError::invalid(format!(
                "text has more than {TEXT_MAX_CHARS} characters"
            )));
        }
        Ok(self.assess(text, locale))
    }

    pub(super) fn spawn_triage_reloader(&self, stop: CancellationToken) {
        let d = self.clone();
        tokio::spawn(async move {
            // Load the segmentation dictionary now, not on the first message.
            let t = d.triage.current();
            let _ = tokio::task::spawn_blocking(move || t.warm_up()).await;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => d.triage.reload_if_changed(),
                }
            }
        });
    }
}
