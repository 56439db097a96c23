//! The training engine on a train/test pair of Parquet files, as a training
//! job runs it (contract → feature pipeline fitted on train → burn → test
//! metrics), for `bench/trainer/bench.py`. Prints one JSON object per epoch
//! (cumulative training seconds, test log loss and accuracy) and a summary.
//!
//! cargo run --release -p pulse-trainer --example bench_train -- \
//!     --train train.parquet --test test.parquet --target label \
//!     --algorithm logistic --epochs 10 --batch 256 --lr 0.01 [--hidden 64,32]

use std::time::Instant;

use arrow::record_batch::RecordBatch;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::{Algorithm, FeatureType, Task};
use pulse_trainer::algo::{self, Control, Head, Matrix};
use pulse_trainer::{metrics, params, pipeline};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn read(path: &str) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(65_536)
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn num(n: f64) -> Value {
    Value { kind: Some(Kind::NumberValue(n)) }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (train_path, test_path) = (arg(&args, "--train", "train.parquet"), arg(&args, "--test", "test.parquet"));
    let target = arg(&args, "--target", "label");
    let mlp = arg(&args, "--algorithm", "logistic") == "mlp";
    let epochs: f64 = arg(&args, "--epochs", "10").parse().unwrap();
    let hidden: Vec<Value> = arg(&args, "--hidden", "64,32").split(',').map(|h| num(h.parse().unwrap())).collect();

    let load = Instant::now();
    let (train, test) = (read(&train_path), read(&test_path));
    let schema = train[0].schema();
    let features = schema
        .fields()
        .iter()
        .filter(|f| f.name() != &target)
        .map(|f| pb::Feature { name: f.name().clone(), r#type: FeatureType::Float as i32, ..Default::default() })
        .collect();
    let contract = pb::Contract {
        model: "bench".into(),
        task: Task::BinaryClassification as i32,
        target: Some(pb::Target { name: target.clone(), r#type: FeatureType::Int as i32, classes: vec![] }),
        features,
        ..Default::default()
    };
    let rows: usize = train.iter().map(RecordBatch::num_rows).sum();
    let all: Vec<usize> = (0..rows).collect();
    let fitted = pipeline::fit(&contract, &train, &all).unwrap();
    let (x, _) = pipeline::transform(&fitted, &train).unwrap();
    let y = pipeline::encode_target(&fitted, Task::BinaryClassification, &train).unwrap();
    let (tx, test_rows) = pipeline::transform(&fitted, &test).unwrap();
    let ty = pipeline::encode_target(&fitted, Task::BinaryClassification, &test).unwrap();
    let cols = fitted.width();
    let prepare_seconds = load.elapsed().as_secs_f64();

    let algorithm = if mlp { Algorithm::MlpClassifier } else { Algorithm::LogisticRegression };
    let mut fields: std::collections::BTreeMap<String, Value> = [
        ("epochs".to_string(), num(epochs)),
        ("batch_size".to_string(), num(arg(&args, "--batch", "256").parse().unwrap())),
        ("learning_rate".to_string(), num(arg(&args, "--lr", "0.01").parse().unwrap())),
        ("early_stopping_patience".to_string(), num(0.0)),
        ("checkpoint_every_epochs".to_string(), num(0.0)),
    ]
    .into_iter()
    .collect();
    if mlp {
        fields.insert(
            "hidden_layers".into(),
            Value { kind: Some(Kind::ListValue(prost_types::ListValue { values: hidden })) },
        );
    }
    let p = params::parse(algorithm, Some(&Struct { fields }), 42).unwrap();
    let train_m = Matrix { x, rows, cols, y, w: Vec::new() };
    let labels = fitted.classes.clone();
    let actual: Vec<usize> = ty.iter().map(|v| *v as usize).collect();
    let score = |w: &algo::Weights| {
        let probs = algo::predict(w, p.activation, Head::Binary, &tx, test_rows, cols).unwrap();
        let probs: Vec<f64> = probs.iter().map(|v| f64::from(*v)).collect();
        metrics::classification(&labels, &actual, &probs)
    };
    // Training time excludes the per-epoch scoring done for the report.
    let mut train_seconds = 0.0f64;
    let mut epoch_started = Instant::now();
    let state = algo::train(
        &p,
        Head::Binary,
        &train_m,
        None,
        None,
        &mut |_, _, _| Control::Continue,
        &mut |r, s| {
            train_seconds += epoch_started.elapsed().as_secs_f64();
            let m = score(s.weights.as_ref().unwrap());
            println!(
                "{{\"epoch\": {}, \"train_seconds\": {train_seconds:.4}, \"test_log_loss\": {:.6}, \"test_accuracy\": {:.6}, \"rows_per_second\": {:.0}}}",
                r.epoch,
                m.log_loss.unwrap_or(f64::NAN),
                m.accuracy.unwrap_or(f64::NAN),
                r.throughput
            );
            epoch_started = Instant::now();
            Ok(Control::Continue)
        },
    )
    .unwrap();
    let m = score(state.weights.as_ref().unwrap());
    println!(
        "{{\"summary\": true, \"rows\": {rows}, \"features\": {cols}, \"prepare_seconds\": {prepare_seconds:.3}, \"train_seconds\": {train_seconds:.4}, \"test_accuracy\": {:.6}, \"test_log_loss\": {:.6}, \"test_roc_auc\": {:.6}}}",
        m.accuracy.unwrap_or(f64::NAN),
        m.log_loss.unwrap_or(f64::NAN),
        m.roc_auc.unwrap_or(f64::NAN)
    );
}
