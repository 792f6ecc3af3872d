//! A local fake of the Meilisearch HTTP API, driven by the real `meilisearch-sdk`:
//! indexes, settings, documents, tasks (enqueued, then processing, then succeeded or
//! failed, like the real task queue) and a naive in-memory search that honours the
//! filter expressions, synonyms, limit/offset, crop and highlight parameters the engine
//! sends. Every request is recorded so tests can check what the SDK actually sent.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub auth: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct FakeIndex {
    primary_key: Option<String>,
    docs: BTreeMap<String, Map<String, Value>>,
    settings: Map<String, Value>,
}

#[derive(Clone)]
struct TaskRecord {
    uid: u32,
    index_uid: Option<String>,
    kind: &'static str,
    details: Value,
    error: Option<Value>,
    /// Times the task was read: the first read answers "processing".
    polls: u32,
}

#[derive(Default)]
struct Inner {
    indexes: HashMap<String, FakeIndex>,
    tasks: Vec<TaskRecord>,
    requests: Vec<Recorded>,
}

/// The running fake.
#[derive(Clone)]
pub struct FakeMeili {
    pub url: String,
    pub key: String,
    inner: Arc<Mutex<Inner>>,
}

const TS: &str = "2025-01-01T00:00:00.000000Z";

fn err(status: StatusCode, code: &str, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "message": message,
            "code": code,
            "type": kind,
            "link": format!("https://docs.meilisearch.com/errors#{code}"),
        })),
    )
        .into_response()
}

fn task_info(t: &TaskRecord) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "taskUid": t.uid,
            "indexUid": t.index_uid,
            "status": "enqueued",
            "type": t.kind,
            "enqueuedAt": TS,
        })),
    )
        .into_response()
}

impl FakeMeili {
    /// Starts the fake on 127.0.0.1:0 on the given runtime; `key` is the master key it
    /// requires as a bearer token.
    pub fn start(rt: &tokio::runtime::Runtime, key: &str) -> FakeMeili {
        rt.block_on(FakeMeili::spawn(key))
    }

    /// [`FakeMeili::start`] from async code, on the current runtime.
    pub async fn spawn(key: &str) -> FakeMeili {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let fake = FakeMeili {
            url: String::new(),
            key: key.to_string(),
            inner,
        };
        let app = Router::new()
            .route("/indexes", post(create_index))
            .route("/indexes/{uid}/settings", patch(update_settings))
            .route("/indexes/{uid}/settings/synonyms", put(update_synonyms))
            .route(
                "/indexes/{uid}/documents",
                post(add_documents).delete(delete_all),
            )
            .route("/indexes/{uid}/documents/delete-batch", post(delete_batch))
            .route("/indexes/{uid}/search", post(search))
            .route("/indexes/{uid}/stats", get(stats))
            .route("/indexes/{uid}", delete(delete_index))
            .route("/tasks/{id}", get(get_task))
            .layer(axum::middleware::from_fn_with_state(fake.clone(), record))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        FakeMeili {
            url: format!("http://{addr}"),
            ..fake
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The settings currently stored for an index.
    pub fn settings(&self, index: &str) -> Map<String, Value> {
        self.inner
            .lock()
            .unwrap()
            .indexes
            .get(index)
            .map(|i| i.settings.clone())
            .unwrap_or_default()
    }

    /// The stored documents of an index.
    pub fn documents(&self, index: &str) -> Vec<Map<String, Value>> {
        self.inner
            .lock()
            .unwrap()
            .indexes
            .get(index)
            .map(|i| i.docs.values().cloned().collect())
            .unwrap_or_default()
    }

    fn authorised(&self, headers: &HeaderMap) -> Option<Response> {
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            None => Some(err(
                StatusCode::UNAUTHORIZED,
                "missing_authorization_header",
                "auth",
                "The Authorization header is missing.",
            )),
            Some(v) if v != format!("Bearer {}", self.key) => Some(err(
                StatusCode::FORBIDDEN,
                "invalid_api_key",
                "auth",
                "The provided API key is invalid.",
            )),
            Some(_) => None,
        }
    }

    fn enqueue(
        &self,
        index_uid: Option<&str>,
        kind: &'static str,
        details: Value,
        error: Option<Value>,
    ) -> TaskRecord {
        let mut inner = self.inner.lock().unwrap();
        let t = TaskRecord {
            uid: inner.tasks.len() as u32,
            index_uid: index_uid.map(str::to_string),
            kind,
            details,
            error,
            polls: 0,
        };
        inner.tasks.push(t.clone());
        t
    }
}

async fn record(
    State(fake): State<FakeMeili>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    fake.inner.lock().unwrap().requests.push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        auth: parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: value,
    });
    if let Some(denied) = fake.authorised(&parts.headers) {
        return denied;
    }
    if parts.method == Method::POST || parts.method == Method::PATCH || parts.method == Method::PUT
    {
        let ct = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/json") {
            return err(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_content_type",
                "invalid_request",
                "The Content-Type header is not supported.",
            );
        }
    }
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
}

fn parse(bytes: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(err(
            StatusCode::BAD_REQUEST,
            "malformed_payload",
            "invalid_request",
            &e.to_string(),
        ))
    })
}

async fn create_index(State(fake): State<FakeMeili>, body: Bytes) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let uid = v["uid"].as_str().unwrap_or("").to_string();
    let exists = fake.inner.lock().unwrap().indexes.contains_key(&uid);
    let error = if exists {
        Some(
            json!({"message": format!("Index `{uid}` already exists."), "code": "index_already_exists", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#index_already_exists"}),
        )
    } else {
        fake.inner.lock().unwrap().indexes.insert(
            uid.clone(),
            FakeIndex {
                primary_key: v["primaryKey"].as_str().map(str::to_string),
                ..FakeIndex::default()
            },
        );
        None
    };
    let t = fake.enqueue(
        Some(&uid),
        "indexCreation",
        json!({"primaryKey": v["primaryKey"]}),
        error,
    );
    task_info(&t)
}

async fn update_settings(
    State(fake): State<FakeMeili>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    {
        let mut inner = fake.inner.lock().unwrap();
        let idx = inner.indexes.entry(uid.clone()).or_default();
        if let Value::Object(m) = &v {
            for (k, val) in m {
                idx.settings.insert(k.clone(), val.clone());
            }
        }
    }
    let t = fake.enqueue(Some(&uid), "settingsUpdate", v, None);
    task_info(&t)
}

async fn update_synonyms(
    State(fake): State<FakeMeili>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    fake.inner
        .lock()
        .unwrap()
        .indexes
        .entry(uid.clone())
        .or_default()
        .settings
        .insert("synonyms".into(), v.clone());
    let t = fake.enqueue(Some(&uid), "settingsUpdate", json!({"synonyms": v}), None);
    task_info(&t)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 511
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn add_documents(
    State(fake): State<FakeMeili>,
    Path(uid): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let Value::Array(docs) = v else {
        return err(
            StatusCode::BAD_REQUEST,
            "malformed_payload",
            "invalid_request",
            "expected an array of documents",
        );
    };
    let pk_param = query.as_deref().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("primaryKey=").map(str::to_string))
    });
    let n = docs.len();
    let mut error = None;
    {
        let mut inner = fake.inner.lock().unwrap();
        let idx = inner.indexes.entry(uid.clone()).or_default();
        if idx.primary_key.is_none() {
            idx.primary_key = pk_param;
        }
        let pk = idx.primary_key.clone().unwrap_or_else(|| "id".into());
        // Like Meilisearch, a batch with one bad document is rejected as a whole.
        let bad = docs
            .iter()
            .find(|d| !d.get(&pk).and_then(Value::as_str).is_some_and(valid_key));
        if let Some(bad) = bad {
            error = Some(
                json!({"message": format!("Document identifier `{}` is invalid.", bad.get(&pk).unwrap_or(&Value::Null)), "code": "invalid_document_id", "type": "invalid_request", "link": "https://docs.meilisearch.com/errors#invalid_document_id"}),
            );
        } else {
            for d in docs {
                if let Value::Object(m) = d {
                    let k = m[&pk].as_str().unwrap_or_default().to_string();
                    idx.docs.insert(k, m);
                }
            }
        }
    }
    let t = fake.enqueue(
        Some(&uid),
        "documentAdditionOrUpdate",
        json!({"receivedDocuments": n, "indexedDocuments": if error.is_some() { 0 } else { n }}),
        error,
    );
    task_info(&t)
}

async fn delete_batch(
    State(fake): State<FakeMeili>,
    Path(uid): Path<String>,
    body: Bytes,
) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let ids: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut deleted = 0;
    if let Some(idx) = fake.inner.lock().unwrap().indexes.get_mut(&uid) {
        for id in &ids {
            deleted += usize::from(idx.docs.remove(id).is_some());
        }
    }
    let t = fake.enqueue(
        Some(&uid),
        "documentDeletion",
        json!({"providedIds": ids.len(), "deletedDocuments": deleted, "originalFilter": null}),
        None,
    );
    task_info(&t)
}

async fn delete_all(State(fake): State<FakeMeili>, Path(uid): Path<String>) -> Response {
    let deleted = fake
        .inner
        .lock()
        .unwrap()
        .indexes
        .get_mut(&uid)
        .map(|i| std::mem::take(&mut i.docs).len())
        .unwrap_or(0);
    let t = fake.enqueue(
        Some(&uid),
        "documentDeletion",
        json!({"providedIds": 0, "deletedDocuments": deleted, "originalFilter": null}),
        None,
    );
    task_info(&t)
}

async fn delete_index(State(fake): State<FakeMeili>, Path(uid): Path<String>) -> Response {
    let removed = fake.inner.lock().unwrap().indexes.remove(&uid);
    let t = fake.enqueue(
        Some(&uid),
        "indexDeletion",
        json!({"deletedDocuments": removed.map_or(0, |i| i.docs.len())}),
        None,
    );
    task_info(&t)
}

async fn stats(State(fake): State<FakeMeili>, Path(uid): Path<String>) -> Response {
    let inner = fake.inner.lock().unwrap();
    let Some(idx) = inner.indexes.get(&uid) else {
        return err(
            StatusCode::NOT_FOUND,
            "index_not_found",
            "invalid_request",
            &format!("Index `{uid}` not found."),
        );
    };
    Json(json!({
        "numberOfDocuments": idx.docs.len(),
        "rawDocumentDbSize": 0,
        "avgDocumentSize": 0,
        "isIndexing": false,
        "numberOfEmbeddings": 0,
        "numberOfEmbeddedDocuments": 0,
        "fieldDistribution": {},
    }))
    .into_response()
}

async fn get_task(State(fake): State<FakeMeili>, Path(id): Path<u32>) -> Response {
    let mut inner = fake.inner.lock().unwrap();
    let Some(t) = inner.tasks.get_mut(id as usize) else {
        return err(
            StatusCode::NOT_FOUND,
            "task_not_found",
            "invalid_request",
            &format!("Task `{id}` not found."),
        );
    };
    t.polls += 1;
    let mut v = json!({
        "uid": t.uid,
        "batchUid": t.uid,
        "indexUid": t.index_uid,
        "type": t.kind,
        "canceledBy": null,
        "details": t.details,
        "error": null,
        "enqueuedAt": TS,
        "startedAt": TS,
    });
    if t.polls == 1 {
        v["status"] = json!("processing");
        v["duration"] = Value::Null;
        v["finishedAt"] = Value::Null;
    } else {
        v["status"] = json!(if t.error.is_some() {
            "failed"
        } else {
            "succeeded"
        });
        v["error"] = t.error.clone().unwrap_or(Value::Null);
        v["duration"] = json!("PT0.001S");
        v["finishedAt"] = json!(TS);
    }
    Json(v).into_response()
}

/// One `field = value` or `field IN [..]` clause of a filter expression.
fn parse_filter(expr: &str) -> Vec<(String, Vec<Value>)> {
    fn literal(s: &str) -> Value {
        let s = s.trim();
        if s == "true" || s == "false" {
            return Value::Bool(s == "true");
        }
        let inner = s
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .expect("quoted filter value");
        let mut out = String::new();
        let mut esc = false;
        for c in inner.chars() {
            if esc {
                out.push(c);
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else {
                out.push(c);
            }
        }
        Value::String(out)
    }
    // Clauses are split on " AND " outside quotes.
    let mut clauses = Vec::new();
    let (mut cur, mut in_q, mut esc) = (String::new(), false, false);
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_q {
            cur.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_q = false;
            }
        } else if c == '"' {
            in_q = true;
            cur.push(c);
        } else if chars[i..].iter().collect::<String>().starts_with(" AND ") {
            clauses.push(std::mem::take(&mut cur));
            i += 5;
            continue;
        } else {
            cur.push(c);
        }
        i += 1;
    }
    clauses.push(cur);
    clauses
        .into_iter()
        .map(|c| {
            if let Some((f, list)) = c.split_once(" IN ") {
                let list = list.trim().trim_start_matches('[').trim_end_matches(']');
                let vals = list.split(", ").map(literal).collect();
                (f.trim().to_string(), vals)
            } else {
                let (f, v) = c.split_once(" = ").expect("field = value");
                (f.trim().to_string(), vec![literal(v)])
            }
        })
        .collect()
}

fn matches_filter(doc: &Map<String, Value>, filter: &[(String, Vec<Value>)]) -> bool {
    filter.iter().all(|(field, vals)| match doc.get(field) {
        Some(Value::Array(a)) => a.iter().any(|x| vals.contains(x)),
        Some(v) => vals.contains(v),
        None => false,
    })
}

fn field_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Crops `text` to about `words` characters/words around the first match and wraps the
/// matches in the highlight tags.
fn format_field(text: &str, needles: &[String], pre: &str, post: &str, crop: usize) -> String {
    let lower = text.to_lowercase();
    let first = needles.iter().filter_map(|n| lower.find(n.as_str())).min();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let start_char = first
        .map(|b| chars.partition_point(|(i, _)| *i < b))
        .unwrap_or(0)
        .saturating_sub(10);
    let window: String = chars
        .iter()
        .skip(start_char)
        .take(crop * 3)
        .map(|(_, c)| *c)
        .collect();
    let mut out = String::new();
    if start_char > 0 {
        out.push('…');
    }
    let wl = window.to_lowercase();
    let mut i = 0;
    while i < window.len() {
        if let Some(n) = needles
            .iter()
            .find(|n| !n.is_empty() && wl.get(i..).is_some_and(|rest| rest.starts_with(n.as_str())))
        {
            out.push_str(pre);
            out.push_str(&window[i..i + n.len()]);
            out.push_str(post);
            i += n.len();
        } else {
            let c = window[i..].chars().next().expect("char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    if start_char + crop * 3 < chars.len() {
        out.push('…');
    }
    out
}

async fn search(State(fake): State<FakeMeili>, Path(uid): Path<String>, body: Bytes) -> Response {
    let v = match parse(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let inner = fake.inner.lock().unwrap();
    let Some(idx) = inner.indexes.get(&uid) else {
        return err(
            StatusCode::NOT_FOUND,
            "index_not_found",
            "invalid_request",
            &format!("Index `{uid}` not found."),
        );
    };
    let q = v["q"].as_str().unwrap_or("").to_lowercase();
    let limit = v["limit"].as_u64().unwrap_or(20) as usize;
    let offset = v["offset"].as_u64().unwrap_or(0) as usize;
    let filter = v["filter"].as_str().map(parse_filter).unwrap_or_default();
    let synonyms = idx.settings.get("synonyms").cloned().unwrap_or(Value::Null);
    let searchable: Vec<String> = idx
        .settings
        .get("searchableAttributes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_else(|| vec!["title".into(), "summary".into(), "body".into()]);
    // Each query word with its synonyms.
    let words: Vec<Vec<String>> = q
        .split_whitespace()
        .map(|w| {
            let mut alts = vec![w.to_string()];
            if let Some(a) = synonyms.get(w).and_then(Value::as_array) {
                alts.extend(a.iter().filter_map(|x| x.as_str().map(str::to_lowercase)));
            }
            alts
        })
        .collect();
    let mut scored: Vec<(f64, &String, &Map<String, Value>)> = Vec::new();
    for (key, doc) in &idx.docs {
        if !matches_filter(doc, &filter) {
            continue;
        }
        let text: String = searchable
            .iter()
            .map(|f| field_text(doc.get(f)).to_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        let matched = words
            .iter()
            .filter(|alts| alts.iter().any(|a| text.contains(a.as_str())))
            .count();
        if matched > 0 || words.is_empty() {
            scored.push((matched as f64 / words.len().max(1) as f64, key, doc));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let total = scored.len();
    let retrieve: Option<Vec<String>> = v["attributesToRetrieve"].as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    });
    let to_format: Vec<String> = ["attributesToCrop", "attributesToHighlight"]
        .iter()
        .filter_map(|k| v[*k].as_array())
        .flatten()
        .filter_map(|x| {
            x.as_str()
                .map(|s| s.split(':').next().unwrap_or(s).to_string())
        })
        .collect();
    let pre = v["highlightPreTag"].as_str().unwrap_or("<em>");
    let post = v["highlightPostTag"].as_str().unwrap_or("</em>");
    let crop = v["cropLength"].as_u64().unwrap_or(10) as usize;
    let needles: Vec<String> = words.iter().flatten().cloned().collect();
    let hits: Vec<Value> = scored
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(score, _, doc)| {
            let mut hit = Map::new();
            for (k, val) in doc.iter() {
                if retrieve.as_ref().is_none_or(|r| r.contains(k)) {
                    hit.insert(k.clone(), val.clone());
                }
            }
            if !to_format.is_empty() {
                let mut formatted = Map::new();
                for (k, val) in doc.iter() {
                    if to_format.contains(k) {
                        let text = field_text(Some(val));
                        formatted.insert(
                            k.clone(),
                            Value::String(format_field(&text, &needles, pre, post, crop)),
                        );
                    } else if retrieve.as_ref().is_none_or(|r| r.contains(k)) {
                        formatted.insert(k.clone(), val.clone());
                    }
                }
                hit.insert("_formatted".into(), Value::Object(formatted));
            }
            if v["showRankingScore"].as_bool() == Some(true) {
                hit.insert("_rankingScore".into(), json!(score));
            }
            Value::Object(hit)
        })
        .collect();
    Json(json!({
        "hits": hits,
        "query": v["q"],
        "processingTimeMs": 0,
        "limit": limit,
        "offset": offset,
        "estimatedTotalHits": total,
    }))
    .into_response()
}
