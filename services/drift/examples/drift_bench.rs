//! Drift engine benchmark: the statistics of a CheckDrift over two Parquet
//! files (a reference and a current side), through the service's own code
//! path — `pulse_snapshot::chunk::read_chunk` decodes the Parquet,
//! `pulse_drift::columns::Column` folds each monitored column into its
//! compact form (finite f64 values, or category counts), and
//! `pulse_drift::compare::statistics` computes, per numeric column, KS
//! (statistic and p-value), Wasserstein, PSI and Jensen–Shannon over
//! reference-quantile bins, and per categorical column PSI and chi-square,
//! one blocking task per column as `Drift::check_as` runs them.
//!
//! ```sh
//! cargo run --release -p pulse-drift --example drift_bench -- ref.parquet cur.parquet \
//!     [--numeric a,b,..] [--categorical x,y,..] [--bins 10] [--psi-epsilon 1e-4] [--parallel N]
//! ```
//!
//! Without `--numeric`/`--categorical` the columns are taken from the
//! reference file's types (floats and integers numeric; strings, booleans
//! and dictionaries categorical), at the cost of one untimed full decode.
//! `--parallel 0` (the default) spawns every column at once on tokio's
//! blocking pool, as the service does; `--parallel N` bounds it to N.
//!
//! Prints one JSON object: row counts, `read_seconds` (Parquet decode and
//! folding, column by column, one side after the other), `compute_seconds`
//! (all column statistics, in parallel), `total_seconds`, `peak_rss_mb`
//! (VmHWM) and every column's metrics. `bench/drift/bench.py` runs it next
//! to SciPy and Evidently.

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use pulse_drift::columns::{Column, Kind};
use pulse_drift::compare::{self, Options};
use serde_json::{Map, Value, json};

struct Args {
    reference: String,
    current: String,
    numeric: Option<Vec<String>>,
    categorical: Option<Vec<String>>,
    options: Options,
    parallel: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: drift_bench <reference.parquet> <current.parquet> [--numeric a,b] [--categorical x,y] [--bins 10] \
         [--psi-epsilon 1e-4] [--parallel N]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut files = Vec::new();
    let (mut numeric, mut categorical) = (None, None);
    let mut options = Options { bins: pulse_drift::stats::DEFAULT_BINS, psi_epsilon: pulse_drift::stats::DEFAULT_EPS };
    let mut parallel = 0;
    let mut it = std::env::args().skip(1);
    let list = |v: Option<String>| -> Vec<String> {
        v.unwrap_or_else(|| usage()).split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--numeric" => numeric = Some(list(it.next())),
            "--categorical" => categorical = Some(list(it.next())),
            "--bins" => options.bins = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "--psi-epsilon" => options.psi_epsilon = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "--parallel" => parallel = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "-h" | "--help" => usage(),
            _ if a.starts_with("--") => usage(),
            _ => files.push(a),
        }
    }
    if files.len() != 2 {
        usage();
    }
    let current = files.pop().unwrap_or_default();
    let reference = files.pop().unwrap_or_default();
    Args { reference, current, numeric, categorical, options, parallel }
}

/// Peak resident set of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Column kinds from the reference file's Arrow types (one full decode).
fn infer(path: &str) -> Result<Vec<(String, Kind)>, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    let batches = pulse_snapshot::chunk::read_chunk(bytes.into(), None)?;
    let Some(first) = batches.first() else { return Err(format!("{path} has no rows").into()) };
    Ok(first
        .schema()
        .fields()
        .iter()
        .filter_map(|f| {
            let kind = match f.data_type() {
                t if t.is_numeric() => Kind::Numeric,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => Kind::Categorical,
                DataType::Dictionary(..) => Kind::Categorical,
                _ => return None,
            };
            Some((f.name().clone(), kind))
        })
        .collect())
}

/// `read_chunk` over one file's bytes, decoding the given columns each
/// call (the bytes are shared, not copied). Generic so the bytes type need
/// not be named here (this crate does not depend on `bytes`).
type ReadChunk<B, E> = fn(B, Option<&[String]>) -> Result<Vec<RecordBatch>, E>;

fn reader<B: Clone, E>(
    read_chunk: ReadChunk<B, E>,
    bytes: B,
) -> impl Fn(Option<&[String]>) -> Result<Vec<RecordBatch>, E> {
    move |columns| read_chunk(bytes.clone(), columns)
}

/// One side, column by column: each monitored column is decoded alone from
/// the file's bytes and folded into its compact form; the decoded batches
/// are dropped before the next column. Returns the columns and the rows.
fn gather(path: &str, monitored: &[(String, Kind)]) -> Result<(Vec<Column>, u64), Box<dyn std::error::Error>> {
    let read = reader(pulse_snapshot::chunk::read_chunk, std::fs::read(path)?.into());
    let mut columns = Vec::with_capacity(monitored.len());
    let mut rows = 0u64;
    for (name, kind) in monitored {
        let mut column = Column::new(name, *kind, false);
        let batches = read(Some(std::slice::from_ref(name)))?;
        let mut n = 0u64;
        for b in &batches {
            n += b.num_rows() as u64;
            match b.column_by_name(name) {
                Some(a) => column.push(a)?,
                None => return Err(format!("{path} has no column '{name}'").into()),
            }
        }
        rows = rows.max(n);
        columns.push(column);
    }
    Ok((columns, rows))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    let monitored: Vec<(String, Kind)> = match (&a.numeric, &a.categorical) {
        (None, None) => infer(&a.reference)?,
        (n, c) => {
            let n = n.iter().flatten().map(|s| (s.clone(), Kind::Numeric));
            let c = c.iter().flatten().map(|s| (s.clone(), Kind::Categorical));
            n.chain(c).collect()
        }
    };
    let rss_before = peak_rss_mb();

    let started = Instant::now();
    let (mut reference, reference_rows) = gather(&a.reference, &monitored)?;
    let (mut current, current_rows) = gather(&a.current, &monitored)?;
    let read_seconds = started.elapsed().as_secs_f64();
    let rss_after_read = peak_rss_mb();

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let options = a.options;
    let limit = Arc::new(tokio::sync::Semaphore::new(if a.parallel == 0 {
        tokio::sync::Semaphore::MAX_PERMITS
    } else {
        a.parallel
    }));
    let compute_started = Instant::now();
    let results = runtime.block_on(async {
        // One task per column on the blocking pool, as Drift::check_as.
        let mut tasks = Vec::with_capacity(monitored.len());
        for (r, c) in reference.iter_mut().zip(current.iter_mut()) {
            let counts = (r.count(), c.count(), r.nulls, c.nulls);
            let (rv, cv) = (r.take_values(), c.take_values());
            let permit = limit.clone().acquire_owned().await?;
            tasks.push((
                counts,
                tokio::task::spawn_blocking(move || {
                    let out = compare::statistics(rv, cv, options);
                    drop(permit);
                    out
                }),
            ));
        }
        let mut out = Vec::with_capacity(tasks.len());
        for (counts, task) in tasks {
            out.push((counts, task.await??));
        }
        Ok::<_, Box<dyn std::error::Error>>(out)
    })?;
    let compute_seconds = compute_started.elapsed().as_secs_f64();
    let total_seconds = started.elapsed().as_secs_f64();

    let columns: Vec<Value> = monitored
        .iter()
        .zip(results)
        .map(|((name, kind), ((rc, cc, rn, cn), metrics))| {
            let m: Map<String, Value> =
                metrics.into_iter().map(|(k, v)| (compare::metric_name(k).to_string(), json!(v))).collect();
            json!({
                "name": name,
                "kind": if *kind == Kind::Numeric { "numeric" } else { "categorical" },
                "reference_count": rc,
                "current_count": cc,
                "reference_nulls": rn,
                "current_nulls": cn,
                "metrics": m,
            })
        })
        .collect();
    let out = json!({
        "engine": "pulse-drift",
        "reference": a.reference,
        "current": a.current,
        "reference_rows": reference_rows,
        "current_rows": current_rows,
        "bins": options.bins,
        "psi_epsilon": options.psi_epsilon,
        "parallel": a.parallel,
        "threads_available": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "read_seconds": read_seconds,
        "compute_seconds": compute_seconds,
        "total_seconds": total_seconds,
        "peak_rss_mb_before_read": rss_before,
        "peak_rss_mb_after_read": rss_after_read,
        "peak_rss_mb": peak_rss_mb(),
        "columns": columns,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
