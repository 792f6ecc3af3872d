//! The `lingshi` command line (contract: serve, agent add; global --config/--data-dir).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::domain::events::Offline;
use crate::domain::kb::NoIndex;
use crate::domain::model::{Actor, SaveOutcome};
use crate::domain::sessions::{NewStaff, MIN_PASSWORD_CHARS};
use crate::domain::types::{MissionId, Role};
use crate::metrics::Metrics;
use crate::server::Opened;

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
    crate::server::open(
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

/// Bring the index up to date after a CLI write, or leave it to the running server.
async fn update_index(config: &Config, opened: &Opened, rebuild: bool) -> anyhow::Result<()> {
    use crate::domain::kb::indexer::{state_file_for, Indexer};
    match crate::domain::kb::open_engine(config) {
        Ok(engine) => {
            let indexer = Indexer {
                store: opened.store.clone(),
                engine,
                state_file: state_file_for(&crate::domain::kb::index_dir(config)),
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
