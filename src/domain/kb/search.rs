//! Searching the knowledge base, recording what people searched for in vain, safety
//! alerts for a place, and suggestions for agents.

use std::time::{Duration, Instant};

use lingshi_search::{Query, SearchResults};
use tokio_util::sync::CancellationToken;

use super::super::events::{Event, Route, Suggestion};
use super::super::model::*;
use super::super::types::*;
use super::super::{Domain, Principal};
use crate::error::{AppError, AppResult};

const QUERY_MAX_CHARS: usize = 256;
/// Least time between two suggestion searches for one conversation.
const SUGGEST_EVERY: Duration = Duration::from_secs(5);

/// A search as a citizen, agent or editor asks it.
#[derive(Debug, Default, Clone)]
pub struct SearchRequest {
    pub q: String,
    pub locale: Option<String>,
    pub country: Option<String>,
    pub category: Option<String>,
    pub limit: Option<usize>,
    /// `published` (default) or `all` (editors: drafts too).
    pub status: Option<String>,
}

/// A search without hits, waiting to be recorded.
#[derive(Debug)]
pub struct Gap {
    query: String,
    locale: Option<String>,
    country: Option<String>,
}

/// One line of the zero-result report.
pub type SearchGapReport = SearchGap;

fn blank_to_none(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl Domain {
    async fn engine_search(&self, q: Query) -> AppResult<SearchResults> {
        let engine = self.kb.engine.clone();
        tokio::task::spawn_blocking(move || engine.search(&q))
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map_err(|e| AppError::Internal(anyhow::anyhow!("search failed: {e}")))
    }

    /// Full-text search. Public searches without hits are recorded for editors.
    pub async fn search(
        &self,
        p: Option<&Principal>,
        req: SearchRequest,
    ) -> AppResult<(SearchResults, u64)> {
        let started = Instant::now();
        let limit = req.limit.unwrap_or(10);
        if !(1..=50).contains(&limit) {
            return Err(AppError::invalid("limit must be between 1 and 50"));
        }
        let category = blank_to_none(req.category);
        if let Some(c) = &category {
            Category::parse(c).map_err(|_| AppError::invalid(format!("unknown category {c:?}")))?;
        }
        let include_unpublished = match req.status.as_deref() {
            None | Some("published") => false,
            Some("all") if p.is_some_and(Principal::edits_content) => true,
            Some("all") => return Err(AppError::forbidden("only editors search drafts")),
            Some(_) => return Err(AppError::invalid("status must be published or all")),
        };
        let country = CountryCode::parse_opt(req.country.as_deref())?;
        let locale = blank_to_none(req.locale);
        let text: String = req.q.chars().take(QUERY_MAX_CHARS).collect();
        let results = self
            .engine_search(Query {
                text: text.clone(),
                locale: locale.clone(),
                country: country.map(|c| c.to_string()),
                category,
                include_unpublished,
                limit,
                offset: 0,
            })
            .await?;
        let took_ms = started.elapsed().as_millis() as u64;
        if results.total == 0 && !text.trim().is_empty() && !include_unpublished {
            // Recorded in the background by one task; dropped rather than queued
            // without bound when it falls behind.
            let _ = self.kb.gaps.try_send(Gap {
                query: text,
                locale,
                country: country.map(|c| c.to_string()),
            });
        }
        Ok((results, took_ms))
    }

    pub(in crate::domain) fn spawn_gap_recorder(&self, stop: CancellationToken) {
        let Some(mut rx) = self
            .kb
            .gaps_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            loop {
                let gap = tokio::select! {
                    _ = stop.cancelled() => return,
                    g = rx.recv() => match g { Some(g) => g, None => return },
                };
                let normalized = gap
                    .query
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase();
                if let Err(e) = store
                    .record_search_gap(
                        &gap.query,
                        &normalized,
                        gap.locale.as_deref(),
                        gap.country.as_deref(),
                    )
                    .await
                {
                    e.log();
                }
            }
        });
    }

    /// The most frequent searches without hits over the last `days` (editors).
    pub async fn search_gaps(
        &self,
        p: &Principal,
        days: Option<i64>,
        limit: Option<i64>,
    ) -> AppResult<(Vec<SearchGap>, i64)> {
        p.require_editor()?;
        let limit = limit.unwrap_or(50).clamp(1, 500);
        let days = days.unwrap_or(30).clamp(1, 365);
        let since = now() - chrono::Duration::days(days);
        Ok((self.store.top_search_gaps(since, limit).await?, days))
    }

    /// Published, unexpired safety alerts for a country (its own and those for
    /// everywhere) or near a point (within each alert's radius), one per slug in the
    /// reader's locale, most severe and newest first.
    pub async fn alerts(
        &self,
        country: Option<&str>,
        point: Option<(f64, f64)>,
        locale: Option<&str>,
    ) -> AppResult<Vec<Article>> {
        let country = CountryCode::parse_opt(country)?;
        let point = point
            .map(|(lat, lon)| GeoPoint::parse(lat, lon, None))
            .transpose()?;
        let mut alerts: Vec<Article> = self
            .store
            .active_alerts(now())
            .await?
            .into_iter()
            .filter(|a| {
                let countries = &a.fields.countries;
                let country_ok =
                    country.is_none_or(|c| countries.is_empty() || countries.contains(&c));
                let near_ok = point.is_none_or(|pt| match a.fields.area {
                    Some(area) => pt.distance_km(area.lat, area.lon) <= area.radius_km,
                    None => false,
                });
                country_ok && near_ok
            })
            .collect();
        let want = blank_to_none(locale.map(str::to_string))
            .unwrap_or_else(|| "zh-CN".into())
            .to_ascii_lowercase();
        let lang = want.split('-').next().unwrap_or("").to_string();
        let pref = |a: &Article| {
            let l = a.fields.locale.as_str().to_ascii_lowercase();
            if l == want {
                0
            } else if l.split('-').next() == Some(lang.as_str()) {
                1
            } else if l.starts_with("zh") {
                2
            } else {
                3
            }
        };
        alerts.sort_by(|a, b| {
            a.fields
                .slug
                .cmp(&b.fields.slug)
                .then_with(|| pref(a).cmp(&pref(b)))
        });
        alerts.dedup_by(|later, first| later.fields.slug == first.fields.slug);
        alerts.sort_by(|a, b| {
            let rank = |x: &Article| x.fields.severity.map_or(0, Severity::rank);
            rank(b)
                .cmp(&rank(a))
                .then_with(|| b.published_at.cmp(&a.published_at))
                .then_with(|| b.updated_at.cmp(&a.updated_at))
        });
        Ok(alerts)
    }

    /// Send the mission's agents the top articles for a citizen's message. Runs in the
    /// background on a thread at the lowest priority (spare CPU only), at most once per
    /// conversation every few seconds and within a node-wide budget, and is skipped
    /// when that thread is behind: suggestions must never slow the message path.
    pub fn suggest(&self, conv: &Conversation, message: &Message, locale: Option<&Locale>) {
        if message.body.trim().chars().count() < 2 {
            return;
        }
        {
            let now = Instant::now();
            let mut seen = self
                .kb
                .suggested_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if seen
                .get(&conv.id)
                .is_some_and(|t| now.duration_since(*t) < SUGGEST_EVERY)
            {
                return;
            }
            if self.kb.suggest_budget.take(&(), 1.0).is_err() {
                return;
            }
            if seen.len() > 10_000 {
                seen.retain(|_, t| now.duration_since(*t) < SUGGEST_EVERY);
            }
            seen.insert(conv.id, now);
        }
        let route = Route::from(conv);
        let country = conv.citizen.country.map(|c| c.to_string());
        let (conversation_id, message_id, seq) = (conv.id, message.id, message.seq);
        let text: String = message.body.chars().take(QUERY_MAX_CHARS).collect();
        let locale = locale.map(|l| l.to_string());
        let engine = self.kb.engine.clone();
        let search = move || {
            let query = |locale: Option<String>| Query {
                text: text.clone(),
                locale,
                country: country.clone(),
                limit: 3,
                ..Query::default()
            };
            let mut hits = engine.search_on_this_thread(&query(locale.clone()))?.hits;
            if hits.len() < 3 && locale.is_some() {
                for h in engine.search_on_this_thread(&query(None))?.hits {
                    if hits.len() < 3 && !hits.iter().any(|x| x.id == h.id) {
                        hits.push(h);
                    }
                }
            }
            Ok::<_, lingshi_search::SearchError>(hits)
        };
        // On spare CPU only (see `spare`): skipped when its queue is full, dropped when
        // it waited longer than a suggestion stays useful.
        let Some(found) = self.kb.suggest_lane.try_run(SUGGEST_EVERY, search) else {
            return;
        };
        let publisher = self.publisher.clone();
        tokio::spawn(async move {
            let hits = match found.await {
                Ok(Ok(hits)) => hits,
                Ok(Err(e)) => {
                    AppError::Internal(anyhow::anyhow!("suggestion search failed: {e}")).log();
                    return;
                }
                Err(_) => return,
            };
            if hits.is_empty() {
                return;
            }
            publisher.publish(Event::Suggestions {
                route,
                conversation_id,
                message_id,
                seq,
                articles: hits
                    .into_iter()
                    .map(|h| Suggestion {
                        id: h.id,
                        slug: h.slug,
                        title: h.title,
                        snippet: h.snippet,
                        category: h.category,
                        locale: h.locale,
                        countries: h.countries,
                        score: h.score,
                    })
                    .collect(),
            });
        });
    }
}
