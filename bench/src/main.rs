//! `lingshi-bench`: benchmark harness for the Lingshi server, with a minimal relay
//! baseline measured the same way. See BENCHMARKS.md at the repository root.

mod coldstart;
mod emergency;
mod idle;
// The throwaway Postgres cluster and NATS server the tests use, shared as source.
mod relay;
mod search;
#[allow(dead_code)]
#[path = "../../tests/common/services.rs"]
mod services;
mod target;
mod telegram;
mod throughput;
mod util;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::target::{Placement, ServerOpts, Target};
use crate::util::{fmt_ms, opt, ratio, table};

#[derive(Parser, Debug)]
#[command(name = "lingshi-bench", about = "Benchmarks for the Lingshi server")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// The `lingshi` binary to start (nothing is built).
    #[arg(long, global = true, default_value = "target/release/lingshi")]
    server_bin: PathBuf,
    /// Use a running server (http://IP:PORT) instead of starting one.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Pid of the running server (memory and CPU figures with --url).
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Config file of the running server (CLI calls with --url).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data dir of the running server (CLI calls and index size with --url).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Repository root (for knowledge-base/synonyms.toml).
    #[arg(long, global = true, default_value = ".")]
    repo: PathBuf,
    /// Server log level for started servers.
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    /// Skip the relay baseline.
    #[arg(long, global = true)]
    no_baseline: bool,
    /// Write the figures as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// N authenticated idle sockets: memory per socket, connect rate, idle CPU.
    Idle {
        #[arg(long, default_value_t = 15_000)]
        connections: usize,
        /// Seconds to hold the sockets (CPU is measured over this span).
        #[arg(long, default_value_t = 60)]
        hold: u64,
        /// Sockets per worker process (each on its own 127.0.0.x address).
        #[arg(long, default_value_t = 5_000)]
        per_worker: usize,
    },
    /// Open-loop send rate through citizens to agents: ack and delivery latency.
    Throughput {
        /// Citizens, each with a conversation (the default is the setting the
        /// throughput goal is stated for: 1,000 citizens, one agent).
        #[arg(long, default_value_t = 1000)]
        conversations: usize,
        #[arg(long, default_value_t = 1)]
        agents: usize,
        /// Aggregate messages per second (the start rate with --find-max).
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Step the rate ×1.5 until p99 ack > 50 ms or errors appear, then bisect
        /// between the last rate that passed and the first that failed.
        #[arg(long)]
        find_max: bool,
        #[arg(long, default_value_t = 12)]
        max_steps: usize,
        /// With --find-max: bisection steps after the first failure (0: the ×1.5
        /// ladder alone).
        #[arg(long, default_value_t = 2)]
        refine: usize,
        /// Frames per second per socket allowed by the started server.
        #[arg(long, default_value_t = 1000)]
        frames_per_second: u32,
        #[command(flatten)]
        deployment: DeploymentArgs,
    },
    /// Knowledge-base import and search latency (HTTP and in-process).
    Search {
        #[arg(long, default_value_t = 100_000)]
        articles: usize,
        #[arg(long, default_value_t = 1_000)]
        queries: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Only the in-process part (no server, no import): for profiling queries.
        #[arg(long)]
        in_process_only: bool,
        /// With --in-process-only: keep the index in this folder and reuse it when it
        /// already holds --articles documents.
        #[arg(long)]
        index: Option<PathBuf>,
        /// With --in-process-only: run the query set this many times.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// With --in-process-only: print this many of the slowest queries.
        #[arg(long, default_value_t = 0)]
        slowest: usize,
    },
    /// Exec → /readyz 200, empty and loaded; idle RSS after start.
    Coldstart {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 100_000)]
        articles: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Triage's share of the server's CPU per message, and time from an emergency
    /// message to the citizen's guidance and to the hotline, under routine load.
    Emergency {
        #[arg(long, default_value_t = 200)]
        probes: usize,
        /// Milliseconds between two emergencies.
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
        /// Routine messages per second sent meanwhile.
        #[arg(long, default_value_t = 1000.0)]
        background_rate: f64,
        #[arg(long, default_value_t = 200)]
        conversations: usize,
    },
    /// Telegram replies at saturation against a fake Bot API enforcing the published
    /// limits: delivery throughput and latency, 429s, order.
    Telegram {
        #[arg(long, default_value_t = 2_000)]
        chats: usize,
        /// Replies per chat.
        #[arg(long, default_value_t = 2)]
        replies: usize,
        #[arg(long, default_value_t = 4)]
        agents: usize,
    },
    /// Every benchmark once at a small size; fails only if one does not complete.
    Smoke,
    #[command(hide = true)]
    Relay {
        #[arg(long)]
        bind: SocketAddr,
    },
    #[command(hide = true)]
    IdleWorker {
        #[arg(long)]
        ws_url: String,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        src: IpAddr,
        #[arg(long)]
        tokens: PathBuf,
    },
}

/// Which backend started servers use, and how many nodes.
#[derive(Args, Debug, Clone)]
struct DeploymentArgs {
    /// `sqlite` (one node, the default) or `postgres`.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Nodes to start (more than one needs `--backend postgres`): citizens connect to
    /// the first, agents to the last, so every message crosses the bus.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Postgres database to use as is (default: a throwaway cluster with a fresh
    /// database per run, started with the binaries of Debian's `postgresql`).
    #[arg(long)]
    database_url: Option<String>,
    /// NATS server for several nodes (default: a throwaway `nats-server`).
    #[arg(long)]
    nats_url: Option<String>,
}

impl DeploymentArgs {
    fn sqlite() -> Self {
        DeploymentArgs {
            backend: "sqlite".into(),
            nodes: 1,
            database_url: None,
            nats_url: None,
        }
    }

    fn label(&self) -> String {
        match (self.backend.as_str(), self.nodes) {
            (b, 1) => b.to_string(),
            (b, n) => format!("{b} ×{n} nodes"),
        }
    }

    /// One placement per node (empty for SQLite).
    fn placements(&self) -> anyhow::Result<Vec<Placement>> {
        match self.backend.as_str() {
            "sqlite" if self.nodes == 1 => return Ok(vec![Placement::default()]),
            "sqlite" => bail!("several nodes need --backend postgres"),
            "postgres" => {}
            other => bail!("--backend {other:?}: sqlite or postgres"),
        }
        if self.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        let db = match &self.database_url {
            Some(u) => u.clone(),
            None => services::postgres()
                .context("--backend postgres needs Postgres (or --database-url)")?
                .fresh_database(),
        };
        let nats = if self.nodes > 1 {
            Some(match &self.nats_url {
                Some(u) => u.clone(),
                None => services::nats()
                    .context("several nodes need nats-server (or --nats-url)")?
                    .url
                    .clone(),
            })
        } else {
            None
        };
        let prefix = format!("bench{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
        Ok((0..self.nodes)
            .map(|i| Placement {
                database_url: Some(db.clone()),
                nats_url: nats.clone(),
                subject_prefix: nats.as_ref().map(|_| prefix.clone()),
                node_name: Some(format!("bench-node-{}", (b'a' + i as u8) as char)),
            })
            .collect())
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Idle workers only hold sockets; everything else (the relay baseline included, like
    // the real server) gets a runtime on both cores.
    let threads = if matches!(cli.command, Cmd::IdleWorker { .. }) {
        1
    } else {
        2
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global.clone();
    let opts = ServerOpts {
        server_bin: g.server_bin.clone(),
        url: g.url.clone(),
        pid: g.pid,
        config: g.config.clone(),
        data_dir: g.data_dir.clone(),
        repo: g.repo.clone(),
        log_level: g.log_level.clone(),
    };
    let figures = match cli.command {
        Cmd::Relay { bind } => return relay::serve(bind).await,
        Cmd::IdleWorker {
            ws_url,
            addr,
            src,
            tokens,
        } => return idle::worker(ws_url, addr, src, tokens).await,
        Cmd::Idle {
            connections,
            hold,
            per_worker,
        } => {
            cmd_idle(
                &opts,
                !g.no_baseline,
                connections,
                Duration::from_secs(hold),
                per_worker,
            )
            .await?
        }
        Cmd::Throughput {
            conversations,
            agents,
            rate,
            duration,
            find_max,
            max_steps,
            refine,
            frames_per_second,
            deployment,
        } => {
            cmd_throughput(
                &opts,
                !g.no_baseline,
                ThroughputArgs {
                    conversations,
                    agents,
                    duration: Duration::from_secs(duration),
                    ladder: throughput::Ladder {
                        start: rate,
                        find_max,
                        max_steps,
                        refine,
                    },
                    frames_per_second,
                    deployment,
                },
            )
            .await?
        }
        Cmd::Search {
            articles,
            queries,
            seed,
            in_process_only: true,
            index,
            rounds,
            slowest,
        } => cmd_search_in_process(&opts, articles, queries, seed, index, rounds, slowest).await?,
        Cmd::Search {
            articles,
            queries,
            seed,
            ..
        } => cmd_search(&opts, articles, queries, seed).await?,
        Cmd::Coldstart {
            messages,
            articles,
            runs,
            seed,
        } => cmd_coldstart(&opts, messages, articles, runs, seed).await?,
        Cmd::Emergency {
            probes,
            interval_ms,
            background_rate,
            conversations,
        } => {
            emergency::run(
                &opts,
                emergency::EmergencyArgs {
                    probes,
                    interval: Duration::from_millis(interval_ms),
                    background_rate,
                    conversations,
                },
            )
            .await?
        }
        Cmd::Telegram {
            chats,
            replies,
            agents,
        } => cmd_telegram(&opts, chats, replies, agents).await?,
        Cmd::Smoke => return cmd_smoke(&opts, g.json.as_ref()).await,
    };
    write_json(g.json.as_ref(), &figures)
}

fn write_json(path: Option<&PathBuf>, v: &Value) -> anyhow::Result<()> {
    if let Some(p) = path {
        std::fs::write(p, serde_json::to_string_pretty(v)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!("figures written to {}", p.display());
    }
    Ok(())
}

async fn cmd_idle(
    opts: &ServerOpts,
    baseline: bool,
    n: usize,
    hold: Duration,
    per_worker: usize,
) -> anyhow::Result<Value> {
    let ours = {
        let mut t = Target::spawn_lingshi(opts, 20, None).await?;
        let f = idle::run(&t, n, hold, per_worker).await?;
        t.stop()?;
        f
    };
    let base = if baseline {
        let mut t = Target::spawn_relay().await?;
        let f = idle::run(&t, n, hold, per_worker).await?;
        t.stop()?;
        Some(f)
    } else {
        None
    };
    println!(
        "\nidle: {n} sockets requested, held {:.0} s",
        hold.as_secs_f64()
    );
    let b = base.as_ref();
    let row = |name: &str, o: f64, bv: Option<f64>, fmt: &dyn Fn(f64) -> String| {
        vec![
            name.to_string(),
            fmt(o),
            bv.map(fmt).unwrap_or("-".into()),
            ratio(Some(o), bv),
        ]
    };
    let f1 = |v: f64| format!("{v:.0}");
    let f2 = |v: f64| format!("{v:.2}");
    let kib = |v: f64| format!("{:.2}", v / 1024.0);
    table(
        &["figure", "lingshi", "baseline", "ratio"],
        &[
            row(
                "sockets connected",
                ours.sockets as f64,
                b.map(|b| b.sockets as f64),
                &f1,
            ),
            row(
                "sockets failed",
                ours.failed as f64,
                b.map(|b| b.failed as f64),
                &f1,
            ),
            row(
                "alive at end of hold",
                ours.alive_at_end as f64,
                b.map(|b| b.alive_at_end as f64),
                &f1,
            ),
            row(
                "server RSS before (KiB)",
                ours.rss_before_kib as f64,
                b.map(|b| b.rss_before_kib as f64),
                &f1,
            ),
            row(
                "server RSS after (KiB)",
                ours.rss_after_kib as f64,
                b.map(|b| b.rss_after_kib as f64),
                &f1,
            ),
            row(
                "memory per socket (KiB)",
                ours.bytes_per_socket,
                b.map(|b| b.bytes_per_socket),
                &kib,
            ),
            row(
                "connect rate (sockets/s)",
                ours.connect_per_sec,
                b.map(|b| b.connect_per_sec),
                &f1,
            ),
            row(
                "idle server CPU (%)",
                ours.idle_cpu_percent,
                b.map(|b| b.idle_cpu_percent),
                &f2,
            ),
        ],
    );
    Ok(json!({"idle": {"lingshi": ours.json(), "baseline": base.map(|b| b.json())}}))
}

struct ThroughputArgs {
    conversations: usize,
    agents: usize,
    duration: Duration,
    ladder: throughput::Ladder,
    frames_per_second: u32,
    deployment: DeploymentArgs,
}

async fn cmd_throughput(
    opts: &ServerOpts,
    baseline: bool,
    a: ThroughputArgs,
) -> anyhow::Result<Value> {
    let per_socket = a.ladder.start / a.conversations.max(1) as f64;
    if per_socket > a.frames_per_second as f64 && !a.ladder.find_max {
        eprintln!(
            "warning: {per_socket:.0} frames/s per citizen socket exceeds the server's {} frames/s limit",
            a.frames_per_second
        );
    }
    let (ours, ours_best) = {
        let mut nodes = vec![];
        for place in a.deployment.placements()? {
            nodes.push(
                Target::spawn_lingshi_placed(opts, a.frames_per_second, None, &place, &[]).await?,
            );
        }
        eprintln!("[lingshi] throughput on {}", a.deployment.label());
        let refs: Vec<&Target> = nodes.iter().collect();
        let r = throughput::run(&refs, a.conversations, a.agents, a.duration, a.ladder).await?;
        for t in &mut nodes {
            t.stop()?;
        }
        r
    };
    let (base, base_best) = if baseline {
        let mut t = Target::spawn_relay().await?;
        let r = throughput::run(&[&t], a.conversations, a.agents, a.duration, a.ladder).await?;
        t.stop()?;
        (r.0, r.1)
    } else {
        (vec![], None)
    };
    println!(
        "\nthroughput ({}): {} conversations, {} agents, {:.0} s per rate",
        a.deployment.label(),
        a.conversations,
        a.agents,
        a.duration.as_secs_f64()
    );
    let mut rows = vec![];
    for (label, steps) in [("lingshi", &ours), ("baseline", &base)] {
        for s in steps.iter() {
            rows.push(vec![
                label.to_string(),
                format!("{:.0}", s.rate),
                format!("{}/{}", s.acked, s.sent),
                s.errors.to_string(),
                fmt_ms(s.ack.p50),
                fmt_ms(s.ack.p99),
                fmt_ms(s.ack.p999),
                fmt_ms(s.delivery.p50),
                fmt_ms(s.delivery.p99),
                format!("{:.0}", s.achieved),
                opt(s.mean_batch, 1),
                opt(s.commits, 0),
                opt(s.mean_commit_ms, 2),
                opt(s.mean_writer_ms, 2),
                opt(s.writer_p99_ms, 1),
                opt(s.slow_commits, 0),
                s.stalls.to_string(),
                opt(s.cpu_percent, 0),
                opt(s.client_cpu_percent, 0),
            ]);
        }
    }
    table(
        &[
            "server",
            "rate/s",
            "acked/sent",
            "errors",
            "ack p50",
            "ack p99",
            "ack p99.9",
            "deliv p50",
            "deliv p99",
            "acked/s",
            "mean batch",
            "commits",
            "commit ms",
            "writer ms",
            "writer p99",
            "commits >50ms",
            "stalls",
            "cpu %",
            "client cpu %",
        ],
        &rows,
    );
    for s in ours.iter().chain(base.iter()) {
        if !s.error_sample.is_empty() {
            eprintln!("errors at {:.0}/s: {:?}", s.rate, s.error_sample);
        }
    }
    // Comparison at the same rate: the last rate both ran.
    let last_common = ours
        .iter()
        .rev()
        .find_map(|o| base.iter().find(|b| b.rate == o.rate).map(|b| (o, b)));
    if let Some((o, b)) = last_common {
        println!("\nat {:.0} msg/s (ms; lingshi / baseline / ratio):", o.rate);
        table(
            &["figure", "lingshi", "baseline", "ratio"],
            &[
                vec![
                    "ack p50".into(),
                    fmt_ms(o.ack.p50),
                    fmt_ms(b.ack.p50),
                    ratio(Some(o.ack.p50), Some(b.ack.p50)),
                ],
                vec![
                    "ack p99".into(),
                    fmt_ms(o.ack.p99),
                    fmt_ms(b.ack.p99),
                    ratio(Some(o.ack.p99), Some(b.ack.p99)),
                ],
                vec![
                    "delivery p50".into(),
                    fmt_ms(o.delivery.p50),
                    fmt_ms(b.delivery.p50),
                    ratio(Some(o.delivery.p50), Some(b.delivery.p50)),
                ],
                vec![
                    "delivery p99".into(),
                    fmt_ms(o.delivery.p99),
                    fmt_ms(b.delivery.p99),
                    ratio(Some(o.delivery.p99), Some(b.delivery.p99)),
                ],
            ],
        );
    }
    if a.ladder.find_max {
        // A series with no failing step stopped at --max-steps.
        let capped =
            |v: &[throughput::StepFigures]| !v.is_empty() && v.iter().all(|s| s.passes(50.0));
        let show = |v: Option<f64>| v.map(|r| format!("{r:.0}")).unwrap_or("none".into());
        println!(
            "\nmax rate with p99 ack ≤ 50 ms and no errors: lingshi {} msg/s, baseline {} msg/s{}",
            show(ours_best),
            show(base_best),
            if capped(&ours) || capped(&base) {
                " (a series hit --max-steps: its true maximum may be higher)"
            } else {
                ""
            }
        );
    }
    let steps = |v: &Vec<throughput::StepFigures>| v.iter().map(|s| s.json()).collect::<Vec<_>>();
    Ok(json!({"throughput": {
        "deployment": a.deployment.label(),
        "conversations": a.conversations, "agents": a.agents, "duration_secs": a.duration.as_secs_f64(),
        "lingshi": steps(&ours), "baseline": steps(&base),
        "lingshi_max_rate": ours_best, "baseline_max_rate": base_best}}))
}

async fn cmd_search(
    opts: &ServerOpts,
    articles: usize,
    queries: usize,
    seed: u64,
) -> anyhow::Result<Value> {
    if articles == 0 || queries == 0 {
        bail!("--articles and --queries must be positive");
    }
    let mut t = Target::spawn_lingshi(opts, 20, None).await?;
    let f = search::run(&t, articles, queries, seed, &opts.repo).await?;
    t.stop()?;
    println!(
        "\nsearch: {} articles, {queries} queries; import + index until searchable {:.1} s; index {:.1} MiB; in-RAM build {:.1} s; {} queries with no hit",
        f.articles,
        f.import_secs,
        f.index_bytes as f64 / 1048576.0,
        f.inproc_build_secs,
        f.zero_hit_queries
    );
    let rows: Vec<Vec<String>> = f
        .http
        .iter()
        .zip(&f.inproc)
        .map(|((class, h), (_, i))| {
            vec![
                class.clone(),
                h.n.to_string(),
                fmt_ms(h.p50),
                fmt_ms(h.p99),
                fmt_ms(i.p50),
                fmt_ms(i.p99),
            ]
        })
        .collect();
    table(
        &[
            "queries",
            "n",
            "HTTP p50",
            "HTTP p99",
            "in-proc p50",
            "in-proc p99",
        ],
        &rows,
    );
    Ok(json!({"search": f.json()}))
}

async fn cmd_search_in_process(
    opts: &ServerOpts,
    articles: usize,
    queries: usize,
    seed: u64,
    index: Option<PathBuf>,
    rounds: usize,
    slowest: usize,
) -> anyhow::Result<Value> {
    if articles == 0 || queries == 0 {
        bail!("--articles and --queries must be positive");
    }
    let qs = search::queries(queries, seed);
    let (by_class, build_secs) =
        search::in_process(articles, qs, seed, &opts.repo, index, rounds, slowest).await?;
    println!(
        "\nsearch (in process): {articles} articles, {queries} queries × {rounds}; build {build_secs:.1} s"
    );
    let rows: Vec<Vec<String>> = by_class
        .iter()
        .map(|(class, s)| vec![class.clone(), s.n.to_string(), fmt_ms(s.p50), fmt_ms(s.p99)])
        .collect();
    table(&["queries", "n", "p50", "p99"], &rows);
    Ok(
        json!({"search_in_process": by_class.iter().map(|(c, s)| json!({"class": c, "summary": s.json()})).collect::<Vec<_>>()}),
    )
}

async fn cmd_coldstart(
    opts: &ServerOpts,
    messages: usize,
    articles: usize,
    runs: usize,
    seed: u64,
) -> anyhow::Result<Value> {
    let f = coldstart::run(opts, messages, articles, runs, seed).await?;
    println!(
        "\ncoldstart: {runs} run(s) each; loaded = {messages} messages + {articles} articles (db {:.1} MiB, index {:.1} MiB)",
        f.db_bytes as f64 / 1048576.0,
        f.index_bytes as f64 / 1048576.0
    );
    let mut rows = vec![vec![
        "empty".to_string(),
        fmt_ms(f.empty_ms.p50),
        fmt_ms(f.empty_ms.max),
        format!("{:.1}", f.empty_rss_kib as f64 / 1024.0),
    ]];
    if let (Some(l), Some(r)) = (&f.loaded_ms, f.loaded_rss_kib) {
        rows.push(vec![
            "loaded".into(),
            fmt_ms(l.p50),
            fmt_ms(l.max),
            format!("{:.1}", r as f64 / 1024.0),
        ]);
    }
    table(
        &["data dir", "ready p50 ms", "ready max ms", "idle RSS MiB"],
        &rows,
    );
    Ok(json!({"coldstart": f.json()}))
}

/// Telegram replies at saturation; fails when a reply is lost, doubled, out of order,
/// or answered 429 (the bridge exceeded the limits the fake enforces).
async fn cmd_telegram(
    opts: &ServerOpts,
    chats: usize,
    replies: usize,
    agents: usize,
) -> anyhow::Result<Value> {
    let f = telegram::run(opts, chats, replies, agents).await?;
    println!(
        "\ntelegram: {} chats × {} replies, fake Bot API at 1/s per chat (burst 3), 30/s overall",
        f.chats,
        f.replies / f.chats.max(1)
    );
    let l = &f.latency;
    table(
        &["figure", "value"],
        &[
            vec!["replies acknowledged".into(), f.replies.to_string()],
            vec![
                "replies delivered (distinct)".into(),
                f.delivered.to_string(),
            ],
            vec!["duplicates".into(), f.duplicates.to_string()],
            vec!["out of order".into(), f.out_of_order.to_string()],
            vec![
                "429 answers (limits exceeded)".into(),
                f.too_many.to_string(),
            ],
            vec![
                "reply rate while agents sent (/s)".into(),
                format!("{:.0}", f.reply_rate),
            ],
            vec![
                "delivery throughput, first reply → last arrival (/s)".into(),
                format!("{:.1}", f.throughput),
            ],
            vec![
                "delivery throughput, first → last arrival (/s)".into(),
                format!("{:.1}", f.steady_throughput),
            ],
            vec!["delivery latency p50 (ms)".into(), fmt_ms(l.p50)],
            vec!["delivery latency p99 (ms)".into(), fmt_ms(l.p99)],
            vec!["delivery latency max (ms)".into(), fmt_ms(l.max)],
            vec![
                "wall time (s)".into(),
                format!("{:.1}", f.wall.as_secs_f64()),
            ],
        ],
    );
    if f.delivered != f.replies || f.duplicates > 0 || f.out_of_order > 0 || f.too_many > 0 {
        bail!(
            "telegram delivery incomplete or outside the limits: {} of {} delivered, {} duplicates, {} out of order, {} × 429",
            f.delivered, f.replies, f.duplicates, f.out_of_order, f.too_many
        );
    }
    Ok(json!({"telegram": f.json()}))
}

/// Every benchmark once, small; fails only when a run does not complete or has no figures.
async fn cmd_smoke(opts: &ServerOpts, json_out: Option<&PathBuf>) -> anyhow::Result<()> {
    let mut passed = 0;
    let mut failed = 0;
    let mut all = serde_json::Map::new();
    let mut record = |name: &str, r: anyhow::Result<Value>, ok: fn(&Value) -> bool| match r {
        Ok(v) if ok(&v) => {
            passed += 1;
            all.insert(name.into(), v);
            println!("smoke: {name} ok");
        }
        Ok(v) => {
            failed += 1;
            println!("smoke: {name} FAILED: no figures in {v}");
        }
        Err(e) => {
            failed += 1;
            println!("smoke: {name} FAILED: {e:#}");
        }
    };
    let r = cmd_idle(opts, true, 100, Duration::from_secs(2), 5_000).await;
    record("idle", r, |v| {
        v["idle"]["lingshi"]["sockets"].as_u64().unwrap_or(0) > 0
            && v["idle"]["lingshi"]["bytes_per_socket"].is_number()
            && v["idle"]["baseline"]["sockets"].as_u64().unwrap_or(0) > 0
    });
    let r = cmd_throughput(
        opts,
        true,
        ThroughputArgs {
            conversations: 20,
            agents: 2,
            duration: Duration::from_secs(2),
            ladder: throughput::Ladder {
                start: 100.0,
                find_max: false,
                max_steps: 1,
                refine: 0,
            },
            frames_per_second: 1000,
            deployment: DeploymentArgs::sqlite(),
        },
    )
    .await;
    record("throughput", r, |v| {
        let o = &v["throughput"]["lingshi"][0];
        o["acked"].as_u64().unwrap_or(0) > 0 && o["ack"]["p99_ms"].is_number()
    });
    // Two nodes on Postgres, when Postgres and NATS are installed (CI installs them).
    if services::postgres().is_some() && services::nats().is_some() && opts.url.is_none() {
        let r = cmd_throughput(
            opts,
            false,
            ThroughputArgs {
                conversations: 20,
                agents: 2,
                duration: Duration::from_secs(2),
                ladder: throughput::Ladder {
                    start: 100.0,
                    find_max: false,
                    max_steps: 1,
                    refine: 0,
                },
                frames_per_second: 1000,
                deployment: DeploymentArgs {
                    backend: "postgres".into(),
                    nodes: 2,
                    database_url: None,
                    nats_url: None,
                },
            },
        )
        .await;
        record("throughput-postgres-2-nodes", r, |v| {
            let o = &v["throughput"]["lingshi"][0];
            o["acked"].as_u64().unwrap_or(0) > 0 && o["delivery"]["p99_ms"].is_number()
        });
    }
    let r = cmd_search(opts, 2_000, 200, 42).await;
    record("search", r, |v| {
        v["search"]["http"]["all"]["n"].as_u64().unwrap_or(0) > 0
            && v["search"]["in_process"]["all"]["n"].as_u64().unwrap_or(0) > 0
    });
    let r = if opts.url.is_some() {
        Err(anyhow::anyhow!("coldstart cannot run against --url"))
    } else {
        cmd_coldstart(opts, 20_000, 500, 1, 42).await
    };
    record("coldstart", r, |v| {
        v["coldstart"]["empty_ready"]["n"].as_u64().unwrap_or(0) > 0
            && v["coldstart"]["loaded_ready"]["n"].as_u64().unwrap_or(0) > 0
    });
    let r = if opts.url.is_some() {
        Err(anyhow::anyhow!("emergency cannot run against --url"))
    } else {
        emergency::run(
            opts,
            emergency::EmergencyArgs {
                probes: 5,
                interval: Duration::from_millis(200),
                background_rate: 50.0,
                conversations: 10,
            },
        )
        .await
    };
    record("emergency", r, |v| {
        v["guidance"]["n"].as_u64().unwrap_or(0) > 0 && v["classifier_us_per_message"].is_number()
    });
    let r = if opts.url.is_some() {
        Err(anyhow::anyhow!("telegram cannot run against --url"))
    } else {
        cmd_telegram(opts, 30, 2, 2).await
    };
    record("telegram", r, |v| {
        v["telegram"]["delivered"].as_u64().unwrap_or(0) > 0
            && v["telegram"]["latency"]["p99_ms"].is_number()
    });
    write_json(json_out, &Value::Object(all))?;
    println!("smoke: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
