//! `coldstart`: exec of `lingshi serve` → `/readyz` 200, on an empty data dir and on one
//! loaded with messages (seeded straight into SQLite with the sqlite3 CLI in one
//! transaction) and articles (`lingshi kb import`). Also the idle VmRSS after start.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::search;
use crate::target::{ServerOpts, Target};
use crate::util::{self, Summary};

#[derive(Debug, Default)]
pub struct ColdFigures {
    pub empty_ms: Summary,
    pub empty_rss_kib: u64,
    pub loaded_ms: Option<Summary>,
    pub loaded_rss_kib: Option<u64>,
    pub messages: usize,
    pub articles: usize,
    pub db_bytes: u64,
    pub index_bytes: u64,
    pub seed_secs: f64,
    pub import_secs: f64,
}

impl ColdFigures {
    pub fn json(&self) -> Value {
        json!({"empty_ready": self.empty_ms.json(), "empty_idle_rss_kib": self.empty_rss_kib,
               "loaded_ready": self.loaded_ms.as_ref().map(|s| s.json()),
               "loaded_idle_rss_kib": self.loaded_rss_kib, "messages": self.messages,
               "articles": self.articles, "db_bytes": self.db_bytes, "index_bytes": self.index_bytes,
               "seed_secs": self.seed_secs, "import_secs": self.import_secs})
    }
}

/// Start, time to ready, settle 1 s, read RSS, stop. Returns (ms, rss KiB).
async fn one_start(opts: &ServerOpts, data: &Path) -> anyhow::Result<(f64, u64)> {
    let mut t = Target::spawn_lingshi(opts, 20, Some(data)).await?;
    let ms = t
        .start_time
        .context("start time of a child server")?
        .as_secs_f64()
        * 1000.0;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = t.rss_kib().context("server RSS")?;
    t.stop()?;
    Ok((ms, rss))
}

fn seed_sql(messages: usize, per_conv: usize) -> String {
    let convs = messages.div_ceil(per_conv).max(1);
    let ts = "2026-01-01T00:00:00.000000Z";
    format!(
        "PRAGMA synchronous=OFF;
BEGIN;
WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM c WHERE i < {last_conv})
INSERT INTO citizens (id, external_sub, display_name, locale, country, created_at, updated_at)
SELECT printf('00000000-0000-7000-8001-%012d', i), NULL, 'citizen ' || i, 'zh-CN', 'BE', '{ts}', '{ts}' FROM c;
WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM c WHERE i < {last_conv})
INSERT INTO conversations (id, mission_id, citizen_id, channel, status, priority, assignee_id, last_seq, created_at, updated_at)
SELECT printf('00000000-0000-7000-8002-%012d', i), 'be', printf('00000000-0000-7000-8001-%012d', i), 'app',
       CASE WHEN i % 5 = 0 THEN 'open' ELSE 'resolved' END, 'normal', NULL,
       MIN({per_conv}, {messages} - i * {per_conv}), '{ts}', '{ts}' FROM c;
WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM m WHERE i < {last_msg})
INSERT INTO messages (id, conversation_id, seq, client_msg_id, sender_kind, sender_id, sender_name, kind, body, attachments, created_at)
SELECT printf('00000000-0000-7000-8003-%012d', i), printf('00000000-0000-7000-8002-%012d', i / {per_conv}),
       (i % {per_conv}) + 1, printf('00000000-0000-7000-8004-%012d', i), 'citizen',
       printf('00000000-0000-7000-8001-%012d', i / {per_conv}), 'citizen',
       'text', '我的护照在布鲁塞尔丢了，请问怎么补办旅行证？ message ' || i, '[]', '{ts}' FROM m;
COMMIT;
",
        last_conv = convs - 1,
        last_msg = messages - 1,
    )
}

pub async fn run(
    opts: &ServerOpts,
    messages: usize,
    articles: usize,
    runs: usize,
    seed: u64,
) -> anyhow::Result<ColdFigures> {
    if opts.url.is_some() {
        bail!("coldstart starts its own servers; it cannot use --url");
    }
    let runs = runs.max(1);
    let mut fig = ColdFigures {
        messages,
        articles,
        ..ColdFigures::default()
    };
    // Empty: a fresh data dir every run.
    let mut empty = vec![];
    let mut rss = 0;
    for _ in 0..runs {
        let tmp = tempfile::Builder::new()
            .prefix("lingshi-bench-cold-")
            .tempdir()?;
        let (ms, r) = one_start(opts, &tmp.path().join("data")).await?;
        empty.push(ms);
        rss = r;
    }
    fig.empty_ms = Summary::of(empty);
    fig.empty_rss_kib = rss;
    eprintln!("coldstart: empty ready p50 {:.1} ms", fig.empty_ms.p50);
    if messages == 0 && articles == 0 {
        return Ok(fig);
    }

    // Loaded: create the schema, seed, import, then time starts.
    let tmp = tempfile::Builder::new()
        .prefix("lingshi-bench-cold-")
        .tempdir()?;
    let data = tmp.path().join("data");
    let mut t = Target::spawn_lingshi(opts, 20, Some(data.as_path())).await?;
    t.stop()?;
    let db = find_db(&data)?;
    if messages > 0 {
        let s = Instant::now();
        let mut child = tokio::process::Command::new("sqlite3")
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("the sqlite3 CLI is needed to seed messages")?;
        let sql = seed_sql(messages, 50);
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().context("sqlite3 stdin")?;
            stdin.write_all(sql.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() || !out.stderr.is_empty() {
            bail!("seeding failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        fig.seed_secs = s.elapsed().as_secs_f64();
        eprintln!(
            "coldstart: seeded {messages} messages in {:.1} s",
            fig.seed_secs
        );
    }
    if articles > 0 {
        let kb = tmp.path().join("kb");
        search::write_corpus(&kb, articles, seed)?;
        let s = Instant::now();
        // The server is stopped, so the CLI builds the index itself.
        let config = crate::target::write_config(tmp.path(), &opts.repo, &opts.log_level)?;
        crate::target::run_cli(
            &opts.server_bin,
            &config,
            &data,
            &["kb", "import", &kb.display().to_string()],
            None,
        )
        .await?;
        fig.import_secs = s.elapsed().as_secs_f64();
        eprintln!(
            "coldstart: imported {articles} articles in {:.1} s",
            fig.import_secs
        );
    }
    fig.db_bytes = util::dir_size(&data) - util::dir_size(&data.join("index"));
    fig.index_bytes = util::dir_size(&data.join("index"));
    let mut loaded = vec![];
    let mut rss = 0;
    for _ in 0..runs {
        let (ms, r) = one_start(opts, &data).await?;
        loaded.push(ms);
        rss = r;
    }
    fig.loaded_ms = Some(Summary::of(loaded));
    fig.loaded_rss_kib = Some(rss);
    Ok(fig)
}

/// The SQLite file the server created under the data dir.
fn find_db(data: &Path) -> anyhow::Result<std::path::PathBuf> {
    for e in std::fs::read_dir(data)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_file()
            && (name.ends_with(".db") || name.ends_with(".sqlite") || name.ends_with(".sqlite3"))
        {
            return Ok(p);
        }
    }
    bail!("no SQLite file found in {}", data.display())
}
