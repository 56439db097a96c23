//! `pulse up` and `pulse serve <service>`.

use std::path::Path;

use anyhow::Context;
use pulse_common::Config;
use pulse_common::host::{AdminKeySource, Hosted, Platform, Server, shutdown_signal};

use crate::cli::{ServeArgs, ServiceName};

/// Domain handles shared by the services of one process, opened once.
#[derive(Default)]
struct Opened {
    datasources: Option<pulse_datasource::Datasources>,
    lineage: Option<pulse_lineage::Lineage>,
    snapshots: Option<pulse_snapshot::Snapshots>,
    extraction_workers_started: bool,
    trainer: Option<pulse_trainer::Trainer>,
    training_workers_started: bool,
    inference: Option<pulse_inference::Inference>,
    drift: Option<pulse_drift::DriftHost>,
}

impl Opened {
    async fn datasources(&mut self, platform: &Platform) -> anyhow::Result<pulse_datasource::Datasources> {
        if self.datasources.is_none() {
            self.datasources = Some(pulse_datasource::open(platform).await?);
        }
        Ok(self.datasources.clone().expect("opened above"))
    }

    /// The snapshot domain, opened once. Its extraction workers start only
    /// when this process serves the snapshot service.
    async fn snapshots(&mut self, platform: &Platform, workers: bool) -> anyhow::Result<pulse_snapshot::Snapshots> {
        if self.snapshots.is_none() {
            let datasources = self.datasources(platform).await?;
            let lineage = self.lineage(platform).await?;
            self.snapshots = Some(pulse_snapshot::open(platform, datasources, Some(lineage), false).await?);
        }
        let snapshots = self.snapshots.clone().expect("opened above");
        if workers && !self.extraction_workers_started {
            snapshots.spawn_workers(platform.config.extraction_workers);
            self.extraction_workers_started = true;
        }
        Ok(snapshots)
    }

    /// The trainer domain, opened once. Its training workers start only when
    /// this process serves the trainer (`pulse up`, `pulse serve trainer`).
    async fn trainer(&mut self, platform: &Platform, workers: bool) -> anyhow::Result<pulse_trainer::Trainer> {
        if self.trainer.is_none() {
            let snapshots = self.snapshots(platform, false).await?;
            let lineage = self.lineage(platform).await?;
            self.trainer = Some(pulse_trainer::open(platform, snapshots, Some(lineage), false).await?);
        }
        let trainer = self.trainer.clone().expect("opened above");
        if workers && !self.training_workers_started {
            trainer.spawn_workers(platform.config.training_workers);
            self.training_workers_started = true;
        }
        Ok(trainer)
    }

    async fn lineage(&mut self, platform: &Platform) -> anyhow::Result<pulse_lineage::Lineage> {
        if self.lineage.is_none() {
            self.lineage = Some(pulse_lineage::open(platform).await?);
        }
        Ok(self.lineage.clone().expect("opened above"))
    }
}

async fn hosted(platform: &Platform, service: ServiceName, opened: &mut Opened) -> anyhow::Result<Hosted> {
    Ok(match service {
        ServiceName::Lineage => pulse_lineage::hosted_with(opened.lineage(platform).await?, platform),
        ServiceName::Datasource => pulse_datasource::hosted(opened.datasources(platform).await?, platform),
        ServiceName::Snapshot => {
            // The snapshot service reads sources through the datasource
            // registry and records lineage; both live in the shared database.
            pulse_snapshot::hosted(opened.snapshots(platform, true).await?, platform)
        }
        ServiceName::Trainer => {
            // The trainer reads dataset versions through the snapshot
            // service's domain and records lineage.
            pulse_trainer::hosted(opened.trainer(platform, true).await?, platform)
        }
        ServiceName::Inference => {
            // Inference reads the model registry and artifacts through the
            // trainer's domain (no training workers unless this process also
            // serves the trainer, which `pulse up` opens first).
            let trainer = opened.trainer(platform, false).await?;
            let lineage = opened.lineage(platform).await?;
            let inference = pulse_inference::open(platform, trainer, Some(lineage)).await?;
            opened.inference = Some(inference.clone());
            pulse_inference::hosted(inference, platform)
        }
        ServiceName::Drift => {
            // Drift reads the prediction log through inference's domain,
            // models through the trainer's and reference rows through the
            // snapshot domain (no workers unless this process serves them).
            let trainer = opened.trainer(platform, false).await?;
            let snapshots = opened.snapshots(platform, false).await?;
            let lineage = opened.lineage(platform).await?;
            let inference = match opened.inference.clone() {
                Some(i) => i,
                None => {
                    let i = pulse_inference::open(platform, trainer.clone(), Some(lineage.clone())).await?;
                    opened.inference = Some(i.clone());
                    i
                }
            };
            let mut drift = pulse_drift::open(platform, trainer, snapshots, inference, Some(lineage)).await?;
            drift.policies = drift.policies.with_datasources(opened.datasources(platform).await?);
            opened.drift = Some(drift.clone());
            pulse_drift::hosted(drift, platform)
        }
    })
}

/// Serves every service (`only` None) or one, until SIGINT or SIGTERM.
pub async fn run(only: Option<ServiceName>, args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(metrics) = args.metrics_listen {
        config.metrics_listen = metrics;
    }
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    pulse_common::telemetry::init(&config);

    let platform = Platform::start(config.clone()).await.context("starting the platform")?;
    let names = match only {
        Some(s) => vec![s],
        None => ServiceName::ALL.to_vec(),
    };
    let mut services = Vec::new();
    let mut opened = Opened::default();
    for name in names {
        services.push(
            hosted(&platform, name, &mut opened).await.with_context(|| format!("starting the {name:?} service"))?,
        );
    }
    if let (Some(lineage), None) = (&opened.lineage, &opened.inference) {
        // Traces from prediction ids, with inference served elsewhere.
        pulse_inference::resolve_predictions(&platform, lineage).await?;
    }
    let mut server = Server::bind(&platform, services).await?;
    // Pipeline steps call Pulse at the address just bound.
    let background = match &opened.drift {
        Some(drift) => Some(pulse_drift::start_background(drift, &platform, server.addr)?),
        None => None,
    };

    let tenant_key = config.state_dir.join("default.key");
    if only.is_none()
        && config.bootstrap_default_tenant
        && let Some(t) = platform.auth.bootstrap_tenant("default", &tenant_key).await?
    {
        tracing::info!(tenant_id = %t.id, "created the default tenant");
    }
    print_banner(&platform, &server, only, &tenant_key);

    let stop = server.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight calls");
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
    });
    server.join().await?;
    if let Some(background) = background {
        background.shutdown().await;
    }
    if let Some(inference) = &opened.inference {
        // Every answered prediction reaches the log before the process ends.
        inference.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn print_banner(platform: &Platform, server: &Server, only: Option<ServiceName>, tenant_key: &Path) {
    let what = match only {
        None => "Pulse is up".to_string(),
        Some(s) => format!("Pulse {s:?} service is up").to_lowercase().replacen("pulse", "Pulse", 1),
    };
    println!("{what}.");
    println!("  gRPC:       {}  (grpcurl -plaintext {} list)", server.addr, server.addr);
    match server.metrics_addr {
        Some(m) => println!("  metrics:    http://{m}/metrics"),
        None => println!("  metrics:    off"),
    }
    println!("  services:   {}", server.services.join(", "));
    println!("  metadata:   {}", platform.database.describe());
    println!("  objects:    {}", platform.objects.describe());
    match &platform.admin_key_source {
        AdminKeySource::File(path) => println!("  admin key:  {}", path.display()),
        AdminKeySource::Config => println!("  admin key:  (from configuration: PULSE_ADMIN_KEY / admin_key)"),
    }
    if only.is_none() && tenant_key.exists() {
        println!("  tenant key: {}  (export PULSE_API_KEY=$(cat {}))", tenant_key.display(), tenant_key.display());
    }
}
