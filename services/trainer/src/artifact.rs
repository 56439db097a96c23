//! The model artifact: the fitted feature pipeline and the network's
//! weights, in one deterministic protobuf encoding, so the same training
//! gives the same bytes and the same SHA-256. Inference loads exactly this.

use arrow::record_batch::RecordBatch;
use prost::Message;
use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::Task;
use sha2::{Digest, Sha256};

use crate::algo::{self, Head, Weights};
use crate::error::TrainerError;
use crate::params::Activation;
use crate::pipeline::{self, FeaturePipeline};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelArtifact {
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    /// `Task`.
    #[prost(int32, tag = "2")]
    pub task: i32,
    /// `Algorithm`.
    #[prost(int32, tag = "3")]
    pub algorithm: i32,
    /// "relu", "tanh" or "gelu" (hidden layers only).
    #[prost(string, tag = "4")]
    pub activation: String,
    #[prost(message, optional, tag = "5")]
    pub pipeline: Option<FeaturePipeline>,
    #[prost(message, optional, tag = "6")]
    pub weights: Option<Weights>,
    #[prost(message, optional, tag = "7")]
    pub contract: Option<pb::ContractRef>,
}

pub fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::Tanh => "tanh",
        Activation::Gelu => "gelu",
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Predictions of a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Row-major `rows × classes` probabilities.
    Classes {
        classes: Vec<String>,
        probabilities: Vec<f64>,
    },
    Values(Vec<f64>),
}

impl ModelArtifact {
    pub fn task(&self) -> Task {
        Task::try_from(self.task).unwrap_or(Task::Unspecified)
    }

    pub fn head(&self) -> Head {
        let classes = self.pipeline.as_ref().map(|p| p.classes.len()).unwrap_or(0);
        match self.task() {
            Task::Regression => Head::Regression,
            _ if classes <= 2 => Head::Binary,
            _ => Head::Multiclass(classes),
        }
    }

    pub fn activation(&self) -> Activation {
        match self.activation.as_str() {
            "tanh" => Activation::Tanh,
            "gelu" => Activation::Gelu,
            _ => Activation::Relu,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TrainerError> {
        let a = Self::decode(bytes)
            .map_err(|e| TrainerError::DataLoss(format!("the model artifact does not decode: {e}")))?;
        if a.format_version != FORMAT_VERSION {
            return Err(TrainerError::Precondition(format!(
                "model artifact format {} is not supported by this server (it reads {FORMAT_VERSION})",
                a.format_version
            )));
        }
        Ok(a)
    }

    /// SHA-256 of the fitted pipeline's encoding.
    pub fn pipeline_sha256(&self) -> String {
        sha256_hex(&self.pipeline.clone().unwrap_or_default().encode_to_vec())
    }

    /// Transforms and scores rows (the contract's feature columns).
    pub fn predict(&self, batches: &[RecordBatch]) -> Result<Predictions, TrainerError> {
        let p = self.pipeline.clone().unwrap_or_default();
        let (x, rows) = pipeline::transform(&p, batches)?;
        self.predict_matrix(&x, rows)
    }

    /// Scores already transformed rows.
    pub fn predict_matrix(&self, x: &[f32], rows: usize) -> Result<Predictions, TrainerError> {
        let p = self.pipeline.clone().unwrap_or_default();
        let w = self.weights.clone().unwrap_or_default();
        let out = algo::predict(&w, self.activation(), self.head(), x, rows, p.width())?;
        Ok(self.outputs(&p, out))
    }

    fn outputs(&self, p: &FeaturePipeline, out: Vec<f32>) -> Predictions {
        match self.head() {
            Head::Regression => {
                Predictions::Values(out.iter().map(|v| f64::from(*v) * p.target_std + p.target_mean).collect())
            }
            _ => Predictions::Classes {
                classes: p.classes.clone(),
                probabilities: out.iter().map(|v| f64::from(*v)).collect(),
            },
        }
    }
}

/// A model ready to serve: the artifact with its network built once, so a
/// prediction costs the transform and one forward pass.
#[derive(Debug)]
pub struct Scorer {
    artifact: ModelArtifact,
    pipeline: FeaturePipeline,
    net: algo::Net,
    device: burn::tensor::Device,
}

impl Scorer {
    pub fn new(artifact: ModelArtifact) -> Self {
        let device = burn::tensor::Device::flex();
        let net = algo::Net::from_weights(&artifact.weights.clone().unwrap_or_default(), &device);
        let pipeline = artifact.pipeline.clone().unwrap_or_default();
        Self { artifact, pipeline, net, device }
    }

    pub fn artifact(&self) -> &ModelArtifact {
        &self.artifact
    }

    pub fn pipeline(&self) -> &FeaturePipeline {
        &self.pipeline
    }

    /// Transforms and scores rows (the contract's feature columns).
    pub fn score(&self, batches: &[RecordBatch]) -> Result<Predictions, TrainerError> {
        let (x, rows) = pipeline::transform(&self.pipeline, batches)?;
        let a = &self.artifact;
        let out =
            algo::predict_with(&self.net, &self.device, a.activation(), a.head(), &x, rows, self.pipeline.width())?;
        Ok(a.outputs(&self.pipeline, out))
    }
}
