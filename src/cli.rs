//! The `lingshi` command line (contract: serve, agent add; global --config/--data-dir).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::assembly::Opened;
use crate::config::Config;
use crate::domain::events::Offline;
use crate::domain::kb::NoIndex;
use crate::domain::model::{Actor, SaveOutcome};
use crate::domain::sessions::{NewStaff, MIN_PASSWORD_CHARS};
use crate::domain::types::{MissionId, Role};
use crate::metrics::Metrics;
use crate::wire::EscalationView;

#[derive(Parser, Debug)]
#[command(
    name = "lingshi",
    version,
    about = "Consular helpdesk: chat between citizens abroad and their mission"
)]
pub struct Cli {
    /// Config file (default: config/lingshi.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory for the database, search index and attachments.
    #[arg(long, global = true, value_name = "DIR", env = "LINGSHI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP + WebSocket server.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long, value_name = "ADDR", env = "LINGSHI_BIND")]
        bind: Option<String>,
    },
    /// Manage agents, editors and admins.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Manage the knowledge base.
    #[command(subcommand)]
    Kb(KbCommand),
    /// The duty officer's view of emergency escalations to the 12308 hotline.
    #[command(subcommand)]
    Escalations(EscalationsCommand),
}

#[derive(Subcommand, Debug)]
pub enum EscalationsCommand {
    /// Escalations of every mission, newest first.
    List {
        /// pending, delivered, acknowledged or resolved.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One escalation and every delivery to the hotline.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Deliver an escalation's hotline events again, under the same webhook ids (the
    /// hotline drops what it already has). A running server picks them up within seconds.
    Redeliver { id: String },
}

#[derive(Subcommand, Debug)]
pub enum KbCommand {
    /// Import Markdown articles with front matter from DIR (any depth); idempotent.
    Import {
        /// Folder of articles, e.g. knowledge-base.
        dir: PathBuf,
    },
    /// Rebuild the search index from the database.
    Reindex,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Create a staff account.
    Add(AgentAdd),
}

#[derive(Args, Debug)]
pub struct AgentAdd {
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub name: String,
    /// Mission id from the config; repeat or separate with commas for several.
    #[arg(long, required = true, value_delimiter = ',')]
    pub mission: Vec<String>,
    /// agent, editor or admin.
    #[arg(long, default_value = "agent")]
    pub role: String,
    /// Most open conversations auto-assigned to this agent at once.
    #[arg(long, default_value_t = 5)]
    pub capacity: i64,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Load the configuration with command-line overrides applied.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    if let Command::Serve { bind: Some(b) } = &cli.command {
        config.bind = b.clone();
    }
    config.validate()?;
    Ok(config)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Repeat password: ")?;
        if p != again {
            bail!("the passwords do not match");
        }
        p
    } else {
        bail!("no terminal to prompt for a password: pass --password-stdin and pipe it in");
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
    }
    Ok(password)
}

/// The domain without a server: the store, a writer, no sockets and no index.
async fn open_offline(config: &Config) -> anyhow::Result<Opened> {
    crate::assembly::open(
        std::sync::Arc::new(config.clone()),
        std::sync::Arc::new(Offline),
        std::sync::Arc::new(Offline),
        std::sync::Arc::new(Metrics::default()),
        std::sync::Arc::new(NoIndex),
    )
    .await
}

pub async fn agent_add(config: &Config, args: &AgentAdd) -> anyhow::Result<()> {
    let role = Role::parse(&args.role).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    let missions: Vec<MissionId> = args
        .mission
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .map(MissionId::new)
        .collect();
    let unknown: Vec<&str> = missions
        .iter()
        .map(MissionId::as_str)
        .filter(|m| config.mission(m).is_none())
        .collect();
    if !unknown.is_empty() || missions.is_empty() {
        let known: Vec<&str> = config.missions.iter().map(|m| m.id.as_str()).collect();
        bail!(
            "unknown mission {:?} (configured: {}); at least one --mission is required",
            unknown.join(","),
            known.join(", ")
        );
    }
    let password = read_password(args.password_stdin)?;
    let opened = open_offline(config).await?;
    let created = opened
        .domain
        .create_staff(
            NewStaff {
                email: args.email.clone(),
                name: args.name.clone(),
                role,
                missions,
                capacity: args.capacity,
                password,
            },
            Actor::System,
        )
        .await;
    opened.close().await?;
    let a = created.map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    let missions: Vec<&str> = a.missions.iter().map(MissionId::as_str).collect();
    println!(
        "created {} {} <{}> for mission(s) {}",
        a.role,
        a.id,
        a.email,
        missions.join(", ")
    );
    Ok(())
}

pub async fn escalations(config: &Config, cmd: &EscalationsCommand) -> anyhow::Result<()> {
    let opened = open_offline(config).await?;
    let result = escalations_with(&opened, cmd).await;
    opened.close().await?;
    result
}

async fn escalations_with(opened: &Opened, cmd: &EscalationsCommand) -> anyhow::Result<()> {
    let d = &opened.domain;
    let fail = |e: crate::error::AppError| anyhow::anyhow!("{}", e.detail());
    match cmd {
        EscalationsCommand::List { state, limit, json } => {
            let list = d
                .operator_escalations(state.as_deref(), *limit)
                .await
                .map_err(fail)?;
            if *json {
                for e in &list {
                    println!("{}", serde_json::to_string(&EscalationView::from(e))?);
                }
                return Ok(());
            }
            if list.is_empty() {
                println!("no escalations");
                return Ok(());
            }
            println!(
                "{:<36}  {:<12}  {:<8}  {:<6}  {:<20}  {:>8}  CITIZEN",
                "ID", "STATE", "MISSION", "REASON", "CREATED", "ATTEMPTS"
            );
            for e in &list {
                println!(
                    "{:<36}  {:<12}  {:<8}  {:<6}  {:<20}  {:>8}  {}",
                    e.id.to_string(),
                    e.state.as_str(),
                    e.mission_id.as_str(),
                    e.reason.as_str(),
                    e.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    e.attempts,
                    printable(&e.citizen.display_name),
                );
            }
        }
        EscalationsCommand::Show { id, json } => {
            let (e, deliveries) = d.operator_escalation(id).await.map_err(fail)?;
            if *json {
                let rows: Vec<serde_json::Value> = deliveries
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "webhook_id": r.id.to_string(),
                            "type": r.event_type,
                            "created_at": r.created_at,
                            "attempts": r.attempts,
                            "next_attempt_at": r.next_attempt_at,
                            "delivered_at": r.delivered_at,
                            "last_error": r.last_error,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "escalation": EscalationView::from(&e),
                        "deliveries": rows,
                    }))?
                );
                return Ok(());
            }
            let time = |t: Option<crate::domain::types::Timestamp>| {
                t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
            };
            println!("escalation      {}", e.id);
            println!("state           {}", e.state.as_str());
            println!("reason          {}", e.reason.as_str());
            println!("mission         {}", e.mission_id.as_str());
            println!("conversation    {}", e.conversation_id);
            println!(
                "citizen         {} ({}){}",
                printable(&e.citizen.display_name),
                e.citizen.id,
                e.citizen
                    .country
                    .map(|c| format!(", {}", c.as_str()))
                    .unwrap_or_default()
            );
            if let Some(l) = e.location {
                println!("location        {:.5}, {:.5}", l.lat, l.lon);
            }
            println!("created         {}", e.created_at.to_rfc3339());
            println!("delivered       {}", time(e.delivered_at));
            println!(
                "acknowledged    {}{}",
                time(e.acknowledged_at),
                e.acknowledged_by
                    .as_deref()
                    .map(|b| format!(" by {}", printable(b)))
                    .unwrap_or_default()
            );
            println!("re-escalations  {}", e.reescalations);
            println!("deliveries to the hotline:");
            if deliveries.is_empty() {
                println!("  none (no hotline url configured when it was created)");
            }
            for r in &deliveries {
                println!(
                    "  {}  {:<22}  attempts {:>3}  {}{}",
                    r.id,
                    r.event_type,
                    r.attempts,
                    match r.delivered_at {
                        Some(t) => format!("delivered {}", t.to_rfc3339()),
                        None => format!("next attempt {}", r.next_attempt_at.to_rfc3339()),
                    },
                    r.last_error
                        .as_deref()
                        .map(|e| format!("  last error: {}", printable(e)))
                        .unwrap_or_default()
                );
            }
        }
        EscalationsCommand::Redeliver { id } => {
            let (e, _) = d.operator_escalation(id).await.map_err(fail)?;
            let n = d.redeliver_escalation(e.id).await.map_err(fail)?;
            println!("{n} hotline event(s) of escalation {} queued again", e.id);
        }
    }
    Ok(())
}

/// Names and errors come from outside: no terminal control characters reach the screen.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Bring the index up to date after a CLI write, or leave it to the running server.
async fn update_index(config: &Config, opened: &Opened, rebuild: bool) -> anyhow::Result<()> {
    use crate::domain::kb::indexer::Indexer;
    match crate::domain::kb::open_engine(config).await {
        Ok(engine) => {
            let indexer = Indexer {
                store: opened.store.clone(),
                engine,
                state_file: crate::domain::kb::index_state_file(config),
            };
            if rebuild {
                let n = indexer.rebuild().await?;
                println!("search index rebuilt: {n} articles");
            } else {
                indexer.start().await?;
                println!("search index updated");
            }
        }
        Err(lingshi_search::SearchError::Locked) => {
            if rebuild {
                opened
                    .store
                    .enqueue_full_reindex()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
                println!("a running server holds the search index; it will rebuild it now");
            } else {
                println!("a running server holds the search index; it applies the changes within a second");
            }
        }
        Err(e) => bail!("cannot open the search index: {e}"),
    }
    Ok(())
}

pub async fn kb_import(config: &Config, dir: &std::path::Path) -> anyhow::Result<bool> {
    use crate::domain::kb::import::{find_files, import_dir};
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let opened = open_offline(config).await?;
    let total = find_files(dir)?.len() as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
                .expect("valid template"),
        );
        b
    });
    let report = import_dir(opened.store.as_ref(), dir, |path, result| {
        let shown = path.strip_prefix(dir).unwrap_or(path).display().to_string();
        match (&bar, result) {
            (_, Err(e)) => {
                let line = format!("error: {e}");
                match &bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
            (Some(b), Ok(_)) => b.set_message(shown),
            (None, Ok(outcome)) => {
                let what = match outcome {
                    SaveOutcome::Created => "created",
                    SaveOutcome::Updated => "updated",
                    SaveOutcome::Unchanged => "unchanged",
                };
                println!("{what:9} {shown}");
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    })
    .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "imported {total} files: {} created, {} updated, {} unchanged, {} failed",
        report.created,
        report.updated,
        report.unchanged,
        report.errors.len()
    );
    update_index(config, &opened, false).await?;
    opened.close().await?;
    Ok(report.errors.is_empty())
}

pub async fn kb_reindex(config: &Config) -> anyhow::Result<()> {
    let opened = open_offline(config).await?;
    update_index(config, &opened, true).await?;
    opened.close().await?;
    Ok(())
}
