//! The starter knowledge base (`knowledge-base/` in the source tree), compiled into the
//! binary: a first run on an empty data directory imports it, so that citizens' searches
//! and agents' suggestions answer from the first minute, before any editor has written.

use std::path::Path;

use super::import::import_bytes;
use crate::domain::Domain;
use crate::error::AppResult;

#[derive(rust_embed::Embed)]
#[folder = "knowledge-base/"]
struct Starter;

/// The article files: Markdown in a locale folder (the README at the top is not one).
fn article_files() -> Vec<String> {
    let mut names: Vec<String> = Starter::iter()
        .map(|n| n.into_owned())
        .filter(|n| n.ends_with(".md") && n.contains('/'))
        .collect();
    names.sort();
    names
}

impl Domain {
    /// Import the starter articles when the knowledge base holds no article at all;
    /// returns how many were imported (0 when there were articles already). A file
    /// that does not parse is logged and skipped: the others still make search work.
    pub async fn import_starter_kb(&self) -> AppResult<usize> {
        if self.store.article_count().await? > 0 {
            return Ok(0);
        }
        let mut imported = 0;
        for name in article_files() {
            let Some(file) = Starter::get(&name) else {
                continue;
            };
            match import_bytes(
                self.store.as_ref(),
                Path::new(&name),
                file.data.into_owned(),
            )
            .await
            {
                Ok(_) => imported += 1,
                Err(e) => tracing::warn!(error = %e, "starter article not imported"),
            }
        }
        self.kb.index_wake.notify_one();
        tracing::info!(articles = imported, "starter knowledge base imported");
        Ok(imported)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_article_is_embedded_in_both_languages() {
        let names = super::article_files();
        let en = names.iter().filter(|n| n.starts_with("en/")).count();
        let zh = names.iter().filter(|n| n.starts_with("zh-CN/")).count();
        assert!(en >= 10, "{names:?}");
        assert_eq!(en, zh, "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with("README.md")));
    }
}
