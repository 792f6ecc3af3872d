//! Keeps the search index in step with the database. Writers (the editor API,
//! `lingshi kb import`, even from another process) add an `index_queue` row in the same
//! transaction as the article; the indexer applies rows in order and records how far it
//! got next to the index, so a restart only applies what is new and never rebuilds a
//! healthy index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lingshi_search::SearchEngine;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::to_doc;
use crate::domain::model::Article;
use crate::domain::ports::Store;
use crate::domain::types::{now, ArticleId};

const QUEUE_PAGE: i64 = 1000;
const REBUILD_PAGE: i64 = 1000;
/// Behind a backlog, the index is committed at most this often.
const BACKLOG_COMMIT_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Indexer {
    pub store: Arc<dyn Store>,
    pub engine: Arc<dyn SearchEngine>,
    /// File holding the last applied queue seq.
    pub state_file: PathBuf,
}

/// Where the applied position is kept for an index at `index_dir`.
pub fn state_file_for(index_dir: &Path) -> PathBuf {
    let mut name = index_dir.as_os_str().to_owned();
    name.push(".applied");
    PathBuf::from(name)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, lingshi_search::SearchError> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

impl Indexer {
    fn applied(&self) -> i64 {
        std::fs::read_to_string(&self.state_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn set_applied(&self, seq: i64) -> anyhow::Result<()> {
        let tmp = self.state_file.with_extension("applied.tmp");
        std::fs::write(&tmp, seq.to_string())?;
        std::fs::rename(&tmp, &self.state_file)?;
        Ok(())
    }

    /// Rebuild the whole index from the database.
    pub async fn rebuild(&self) -> anyhow::Result<u64> {
        let upto = self.store.max_index_seq().await?;
        let engine = self.engine.clone();
        blocking(move || engine.clear()).await?;
        let mut after: Option<ArticleId> = None;
        let mut n = 0u64;
        loop {
            let page = self.store.articles_page(after, REBUILD_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let docs: Vec<_> = page.iter().filter_map(to_doc).collect();
            n += docs.len() as u64;
            let engine = self.engine.clone();
            blocking(move || engine.upsert(docs)).await?;
        }
        let engine = self.engine.clone();
        blocking(move || engine.commit()).await?;
        self.set_applied(upto)?;
        self.store.prune_index_queue(upto).await?;
        tracing::info!(documents = n, "search index rebuilt");
        Ok(n)
    }

    /// Apply every queued change; returns how many queue rows were applied.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let mut applied = self.applied();
        let mut total = 0;
        let mut since_commit = Instant::now();
        let mut uncommitted = false;
        loop {
            let rows = self.store.index_queue_after(applied, QUEUE_PAGE).await?;
            let Some(&(last, _)) = rows.last() else { break };
            if rows.iter().any(|(_, id)| id.is_none()) {
                // The rebuild clears the index and commits, uncommitted changes included.
                uncommitted = false;
                self.rebuild().await?;
                total += rows.len();
                applied = self.applied();
                continue;
            }
            let mut ids: Vec<ArticleId> = rows.iter().filter_map(|(_, id)| *id).collect();
            ids.sort();
            ids.dedup();
            let found: HashMap<ArticleId, Article> = self
                .store
                .articles_by_ids(&ids)
                .await?
                .into_iter()
                .map(|a| (a.id, a))
                .collect();
            let mut upserts = Vec::with_capacity(found.len());
            let mut deletes = Vec::new();
            for id in ids {
                match found.get(&id).and_then(to_doc) {
                    Some(doc) => upserts.push(doc),
                    None => deletes.push(id.to_string()),
                }
            }
            // A short page is the end of the queue: commit now, so an editor's save is
            // searchable at once. Behind a backlog, commit every few seconds instead of
            // every page: each commit writes a segment per indexing thread, which
            // merges must later rewrite.
            let commit =
                rows.len() < QUEUE_PAGE as usize || since_commit.elapsed() >= BACKLOG_COMMIT_EVERY;
            let engine = self.engine.clone();
            blocking(move || {
                if !deletes.is_empty() {
                    engine.delete(&deletes)?;
                }
                if !upserts.is_empty() {
                    engine.upsert(upserts)?;
                }
                if commit {
                    engine.commit()?;
                }
                Ok(())
            })
            .await?;
            total += rows.len();
            applied = last;
            uncommitted = !commit;
            if commit {
                self.set_applied(last)?;
                since_commit = Instant::now();
            }
        }
        if uncommitted {
            let engine = self.engine.clone();
            blocking(move || engine.commit()).await?;
            self.set_applied(applied)?;
        }
        if total > 0 {
            self.store.prune_index_queue(applied).await?;
            tracing::debug!(rows = total, "search index caught up");
        }
        Ok(total)
    }

    /// At start: catch up, and rebuild when the index cannot be trusted (new while the
    /// database has articles).
    pub async fn start(&self) -> anyhow::Result<()> {
        let docs = {
            let engine = self.engine.clone();
            blocking(move || engine.doc_count()).await?
        };
        let articles = self.store.article_count().await?;
        if docs == 0 && articles > 0 && self.applied() == 0 {
            tracing::info!(articles, "search index is new; building it");
            self.rebuild().await?;
        } else {
            self.catch_up().await?;
        }
        Ok(())
    }

    /// Follow the queue until `stop`: woken by in-process saves, polling for saves by
    /// other processes, and sweeping expired articles out of public results.
    pub fn spawn(self, wake: Arc<Notify>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Err(e) = self.start().await {
                tracing::error!(error = ?e, "search index catch-up failed");
            }
            let mut sweep = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = sweep.tick() => {
                        if let Err(e) = self.store.queue_expired_articles(now()).await {
                            e.log();
                        }
                    }
                }
                if let Err(e) = self.catch_up().await {
                    tracing::error!(error = ?e, "search indexer failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    }
}
