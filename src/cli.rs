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
        .map_err(|e| anyhow::anyhow!("{}", e.public_message()))?;
    println!(
        "created {} {id} <{email}> for mission(s) {}",
        args.role,
        missions.join(", ")
    );
    store.close().await;
    Ok(())
}
