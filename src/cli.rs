//! The `lingshi` command line (contract: serve, agent add; global --config/--data-dir).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::auth::{check_missions, check_role, hash_password};
use crate::config::Config;
use crate::store::Store;

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

pub const MIN_PASSWORD_CHARS: usize = 8;

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

pub async fn agent_add(config: &Config, args: &AgentAdd) -> anyhow::Result<()> {
    let email = args.email.trim();
    if !(3..=254).contains(&email.len())
        || !email.contains('@')
        || email.contains(char::is_whitespace)
    {
        bail!("--email {email:?} is not an email address");
    }
    let name = args.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        bail!("--name must have 1 to 100 characters");
    }
    check_role(&args.role).map_err(anyhow::Error::msg)?;
    if !(0..=100).contains(&args.capacity) {
        bail!("--capacity must be between 0 and 100");
    }
    let missions: Vec<String> = args
        .mission
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    check_missions(config, &missions).map_err(anyhow::Error::msg)?;
    let password = read_password(args.password_stdin)?;
    let hash = hash_password(&password)?;
    let store = Store::open(&config.data_dir).await?;
    let id = store
        .create_agent(email, name, &args.role, &hash, args.capacity, &missions)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.detail()))?;
    println!(
        "created {} {id} <{email}> for mission(s) {}",
        args.role,
        missions.join(", ")
    );
    store.close().await;
    Ok(())
}

/// Bring the index up to date after a CLI write, or leave it to the running server.
async fn update_index(config: &Config, store: &Store, rebuild: bool) -> anyhow::Result<()> {
    use crate::kb::indexer::{state_file_for, Indexer};
    match crate::kb::open_engine(config) {
        Ok(engine) => {
            let indexer = Indexer {
                store: store.clone(),
                engine,
                state_file: state_file_for(&crate::kb::index_dir(config)),
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
                store
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
    use crate::kb::import::{find_files, import_dir};
    use crate::store::SaveOutcome;
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let store = Store::open(&config.data_dir).await?;
    let total = find_files(dir)?.len() as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
                .expect("valid template"),
        );
        b
    });
    let report = import_dir(&store, dir, |path, result| {
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
    update_index(config, &store, false).await?;
    store.close().await;
    Ok(report.errors.is_empty())
}

pub async fn kb_reindex(config: &Config) -> anyhow::Result<()> {
    let store = Store::open(&config.data_dir).await?;
    update_index(config, &store, true).await?;
    store.close().await;
    Ok(())
}
