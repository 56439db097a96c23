//! A load generator for `bench/inference/bench.py`: closed loop (fixed
//! concurrency) or open loop (fixed rate, latency measured from each
//! request's scheduled start, so a stalled server cannot hide its queueing),
//! against Pulse's `Predict`, an empty tonic call (`grpc.health.v1` Check on
//! the same server: the limit), or an HTTP JSON endpoint (MLflow's
//! `/invocations`, MLServer's `/v2/models/…/infer`). Prints one JSON line:
//! requests, errors, seconds, throughput, p50_ms, p99_ms.
//!
//!     loadgen --target pulse --addr 127.0.0.1:50051 --key $KEY --model m \
//!             --features 32 (--concurrency 16 | --rate 5000) --seconds 10
//!     loadgen --target http --addr 127.0.0.1:5000 --path /invocations --body-file row.json …

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use pulse_proto::inference::v1::{self as inf, feature_value::Kind};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

#[derive(Clone)]
enum Target {
    Pulse { client: pulse_client::Client, rows: Arc<Vec<inf::Row>>, model: String },
    Empty { channel: tonic::transport::Channel },
    Http { client: Box<HttpClient<HttpConnector, Full<Bytes>>>, uri: String, body: Bytes },
}

impl Target {
    async fn call(&self, n: u64) -> bool {
        match self {
            Target::Pulse { client, rows, model } => {
                let req = inf::PredictRequest {
                    model: model.clone(),
                    row: Some(rows[n as usize % rows.len()].clone()),
                    bypass_cache: true,
                    ..Default::default()
                };
                client.predict(req).await.is_ok()
            }
            Target::Empty { channel } => {
                let mut h = tonic_health::pb::health_client::HealthClient::new(channel.clone());
                h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok()
            }
            Target::Http { client, uri, body } => {
                let req = hyper::Request::post(uri.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .expect("request");
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        resp.into_body().collect().await.is_ok() && ok
                    }
                    Err(_) => false,
                }
            }
        }
    }
}

async fn targets(args: &[String], addr: &str) -> Vec<Target> {
    let connections: usize = arg(args, "--connections", "4").parse().expect("--connections");
    match arg(args, "--target", "pulse").as_str() {
        "pulse" => {
            let features: usize = arg(args, "--features", "32").parse().expect("--features");
            let mut state = 42u64;
            let mut next = || {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (state >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
            };
            let rows: Vec<inf::Row> = (0..1000)
                .map(|_| inf::Row {
                    features: (0..features)
                        .map(|i| (format!("f{i}"), inf::FeatureValue { kind: Some(Kind::FloatValue(next())) }))
                        .collect(),
                })
                .collect();
            let rows = Arc::new(rows);
            let (key, model) = (arg(args, "--key", ""), arg(args, "--model", "m"));
            let mut out = Vec::new();
            for _ in 0..connections {
                let client = pulse_client::Client::connect(addr, Some(&key)).await.expect("connects").with_retries(0);
                out.push(Target::Pulse { client, rows: rows.clone(), model: model.clone() });
            }
            out
        }
        "empty" => {
            let mut out = Vec::new();
            for _ in 0..connections {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .expect("address")
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .expect("connects");
                out.push(Target::Empty { channel });
            }
            out
        }
        "http" => {
            let body = std::fs::read(arg(args, "--body-file", "body.json")).expect("--body-file");
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client =
                HttpClient::builder(hyper_util::rt::TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector);
            let uri = format!("http://{addr}{}", arg(args, "--path", "/invocations"));
            vec![Target::Http { client: Box::new(client), uri, body: Bytes::from(body) }]
        }
        other => panic!("unknown --target {other}"),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = arg(&args, "--addr", "127.0.0.1:50051");
    let seconds: f64 = arg(&args, "--seconds", "10").parse().expect("--seconds");
    let concurrency: usize = arg(&args, "--concurrency", "0").parse().expect("--concurrency");
    let rate: f64 = arg(&args, "--rate", "0").parse().expect("--rate");
    let targets = targets(&args, &addr).await;
    // Warm-up: connections open, the model loaded.
    for t in &targets {
        for i in 0..20 {
            t.call(i).await;
        }
    }
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut latencies: Vec<u32> = Vec::new();
    if concurrency > 0 {
        let tasks: Vec<_> = (0..concurrency)
            .map(|w| {
                let (target, errors) = (targets[w % targets.len()].clone(), errors.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut n = w as u64;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        if !target.call(n).await {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        lat.push(t.elapsed().as_micros() as u32);
                        n += concurrency as u64;
                    }
                    lat
                })
            })
            .collect();
        for t in tasks {
            latencies.extend(t.await.expect("worker"));
        }
    } else {
        assert!(rate > 0.0, "give --concurrency or --rate");
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut handles = Vec::new();
        let mut n = 0u64;
        loop {
            let scheduled = started + interval.mul_f64(n as f64);
            if scheduled >= deadline {
                break;
            }
            tokio::time::sleep_until(scheduled.into()).await;
            let (target, errors) = (targets[n as usize % targets.len()].clone(), errors.clone());
            handles.push(tokio::spawn(async move {
                if !target.call(n).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                scheduled.elapsed().as_micros() as u32
            }));
            n += 1;
        }
        for h in handles {
            if let Ok(l) = h.await {
                latencies.push(l);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds);
    latencies.sort_unstable();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[i]) / 1000.0
    };
    println!(
        "{{\"requests\": {}, \"errors\": {}, \"seconds\": {elapsed:.3}, \"throughput\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}",
        latencies.len(),
        errors.load(Ordering::Relaxed),
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}
