//! The operator commands: lineage, pipeline runs, admin and whoami, over `pulse-client`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pulse_client::{Client, LineageTree, kind_name};
use pulse_proto::lineage::v1::Direction;

#[derive(Parser, Debug)]
#[command(name = "pulse", version, about = "Pulse: safe machine learning on live production databases")]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Server address.
    #[arg(long, global = true, env = "PULSE_ENDPOINT", default_value = pulse_client::DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Tenant API key; defaults to the key `pulse up` wrote to <state-dir>/default.key.
    #[arg(long, global = true, env = "PULSE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Admin key for `pulse admin`; defaults to <state-dir>/admin.key.
    #[arg(long, global = true, env = "PULSE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Where `pulse up` keeps its state (for the default key files).
    #[arg(long = "keys-dir", global = true, env = "PULSE_STATE_DIR", default_value = ".pulse")]
    pub state_dir: PathBuf,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// gRPC address (overrides PULSE_LISTEN); port 0 picks a free port.
    #[arg(long)]
    pub listen: Option<String>,
    /// Metrics address (overrides PULSE_METRICS_LISTEN); empty disables.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// State directory for the embedded store, objects and keys (overrides PULSE_STATE_DIR).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceName {
    Datasource,
    Snapshot,
    Trainer,
    Inference,
    Lineage,
    Drift,
}

impl ServiceName {
    pub const ALL: [ServiceName; 6] =
        [Self::Datasource, Self::Snapshot, Self::Trainer, Self::Inference, Self::Lineage, Self::Drift];
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ExportFormat {
    /// Graphviz.
    Dot,
    /// One JSON object per node and edge.
    Jsonl,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run all six services in one process, with embedded defaults.
    Up(ServeArgs),
    /// Run one service.
    Serve {
        service: ServiceName,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Print where an entity came from (or, with --downstream, what was made from it).
    Lineage {
        id: String,
        #[arg(long)]
        downstream: bool,
        /// Levels to walk (default 25, at most 100).
        #[arg(long, default_value_t = 0)]
        depth: u32,
        /// Nodes to return (default 1000, at most 10000).
        #[arg(long, default_value_t = 0)]
        max_nodes: u32,
    },
    /// What a change to a datasource or dataset version would affect.
    Impact { id: String },
    /// Export the lineage graph, or the part connected to --root.
    ExportLineage {
        #[arg(long, default_value = "")]
        root: String,
        #[arg(long, value_enum, default_value = "dot")]
        format: ExportFormat,
    },
    /// Which tenant the API key belongs to.
    Whoami,
    /// Exit 0 when the server (or one service) answers `grpc.health.v1`
    /// SERVING, 1 otherwise: the container health check. Needs no key.
    Health {
        /// A service name such as `pulse.trainer.v1.TrainerService`; empty
        /// checks the whole server.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Tenants and API keys (needs the admin key).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Pipeline runs.
    #[command(subcommand)]
    Runs(RunsCommand),
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// A run's state, its steps and its timeline (oldest first).
    Show { run_id: String },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a tenant.
    CreateTenant { name: String },
    /// List tenants.
    Tenants,
    /// Create an API key for a tenant (printed once).
    CreateKey {
        tenant_id: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List a tenant's keys.
    Keys { tenant_id: String },
    /// Revoke a key.
    RevokeKey { key_id: String },
}

fn key_from(explicit: &Option<String>, file: &Path, what: &str, env: &str) -> anyhow::Result<String> {
    if let Some(k) = explicit.as_ref().filter(|k| !k.is_empty()) {
        return Ok(k.clone());
    }
    std::fs::read_to_string(file).map(|k| k.trim().to_string()).with_context(|| {
        format!(
            "no {what}: set {env} or pass --{}, or run `pulse up` here so {} exists",
            what.replace(' ', "-"),
            file.display()
        )
    })
}

pub async fn run(command: Command, conn: Connection) -> anyhow::Result<()> {
    match command {
        Command::Up(_) | Command::Serve { .. } => unreachable!("handled by main"),
        Command::Admin(cmd) => {
            let key = key_from(&conn.admin_key, &conn.state_dir.join("admin.key"), "admin key", "PULSE_ADMIN_KEY")?;
            let client = Client::connect(&conn.endpoint, Some(&key)).await?;
            admin(client, cmd).await
        }
        Command::Health { service } => {
            let client = Client::connect(&conn.endpoint, None).await?;
            if client.health(&service).await? {
                println!("SERVING");
                Ok(())
            } else {
                bail!(
                    "{} is not serving{}",
                    conn.endpoint,
                    if service.is_empty() { String::new() } else { format!(" {service}") }
                )
            }
        }
        other => {
            let key = key_from(&conn.api_key, &conn.state_dir.join("default.key"), "api key", "PULSE_API_KEY")?;
            let client = Client::connect(&conn.endpoint, Some(&key)).await?;
            tenant_command(client, other).await
        }
    }
}

async fn tenant_command(client: Client, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Lineage { id, downstream, depth, max_nodes } => {
            let direction = if downstream { Direction::Downstream } else { Direction::Upstream };
            let trace = client.trace(&id, direction, depth, max_nodes).await?;
            print!("{}", LineageTree::new(&trace));
        }
        Command::Impact { id } => {
            let impact = client.impact(&id, 0, 0).await?;
            let root = impact.root.clone().unwrap_or_default();
            println!("Impact of {} ({})", root.id, kind_name(root.kind()));
            if impact.counts.is_empty() {
                println!("  nothing downstream");
            }
            let mut counts: Vec<_> = impact.counts.iter().collect();
            counts.sort();
            for (kind, n) in counts {
                println!("  {kind}: {n}");
            }
            for mv in &impact.model_versions {
                println!("  model {}@{}", mv.model, mv.version);
            }
            for d in &impact.deployments {
                println!("  deployment {}", d.id);
            }
            if let Some(t) = impact.truncation.as_ref().filter(|t| t.truncated) {
                println!("  … truncated: {}", t.reason);
            }
        }
        Command::ExportLineage { root, format } => {
            let graph = client.export(&root, 0).await?;
            match format {
                ExportFormat::Dot => {
                    println!("digraph lineage {{");
                    for n in &graph.nodes {
                        println!("  {:?} [label={:?}];", n.id, format!("{}\\n{}", kind_name(n.kind()), n.id));
                    }
                    for e in &graph.edges {
                        println!("  {:?} -> {:?};", e.from_id, e.to_id);
                    }
                    println!("}}");
                }
                ExportFormat::Jsonl => {
                    for n in &graph.nodes {
                        let v = serde_json::json!({"type": "node", "id": n.id, "kind": kind_name(n.kind()), "attributes": n.attributes});
                        println!("{v}");
                    }
                    for e in &graph.edges {
                        let v = serde_json::json!({"type": "edge", "from": e.from_id, "to": e.to_id, "relation": e.relation});
                        println!("{v}");
                    }
                }
            }
        }
        Command::Whoami => {
            let me = client.who_am_i().await?;
            if me.admin {
                println!("admin key");
            } else {
                println!("tenant {}  key {}", me.tenant_id, me.key_id);
            }
        }
        Command::Runs(RunsCommand::Show { run_id }) => {
            let (run, timeline) = tokio::try_join!(client.get_pipeline_run(&run_id), client.run_timeline(&run_id))?;
            print!("{}", pulse_client::run_report(&run, &timeline));
        }
        _ => bail!("not a tenant command"),
    }
    Ok(())
}

async fn admin(client: Client, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::CreateTenant { name } => {
            let t = client.create_tenant(&name, None).await?;
            println!("{}  {}", t.id, t.name);
        }
        AdminCommand::Tenants => {
            let mut token = String::new();
            loop {
                let page = client.list_tenants(&token, 0).await?;
                for t in &page.tenants {
                    println!("{}  {}", t.id, t.name);
                }
                token = page.page.map(|p| p.next_page_token).unwrap_or_default();
                if token.is_empty() {
                    break;
                }
            }
        }
        AdminCommand::CreateKey { tenant_id, name } => {
            let k = client.create_api_key(&tenant_id, &name).await?;
            eprintln!(
                "key {} for tenant {}; the secret below is shown once:",
                k.key.as_ref().map(|k| k.id.as_str()).unwrap_or(""),
                tenant_id
            );
            println!("{}", k.secret);
        }
        AdminCommand::Keys { tenant_id } => {
            for k in client.list_api_keys(&tenant_id).await?.keys {
                let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}  {}  {state}", k.id, k.name);
            }
        }
        AdminCommand::RevokeKey { key_id } => {
            let k = client.revoke_api_key(&key_id).await?;
            println!("revoked {}", k.id);
        }
    }
    Ok(())
}
