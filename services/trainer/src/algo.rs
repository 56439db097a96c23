//! The algorithms, on burn's Flex CPU backend: logistic regression (binary
//! and multinomial), linear regression, MLP classifier and regressor, trained
//! with mini-batch Adam, AdamW or SGD, a learning-rate schedule and early
//! stopping on the validation split.
//!
//! Determinism: weights are initialised, batches shuffled and dropout masks
//! drawn from one seeded generator per purpose (never the backend's global
//! RNG, which concurrent jobs would share), so the same data, parameters and
//! seed give bit-identical weights on the same machine. A checkpoint holds
//! the weights, the optimiser state and the early-stopping state after an
//! epoch; resuming from it continues exactly as the uninterrupted run would.

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::error::TrainerError;
use crate::params::{Activation, LrSchedule, OptimizerKind, TrainParams};

/// What the network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// One logit, sigmoid.
    Binary,
    /// `k` logits, softmax.
    Multiclass(usize),
    /// One value (of the standardised target).
    Regression,
}

impl Head {
    pub fn outputs(self) -> usize {
        match self {
            Self::Binary | Self::Regression => 1,
            Self::Multiclass(k) => k,
        }
    }
}

/// Rows as a dense row-major matrix with their targets: class indices for
/// classification, standardised values for regression.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    pub x: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub y: Vec<f32>,
    /// Per-row loss weight (class weights); empty means 1.
    pub w: Vec<f32>,
}

impl Matrix {
    fn batch(&self, idx: &[usize]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut x = Vec::with_capacity(idx.len() * self.cols);
        let mut y = Vec::with_capacity(idx.len());
        let mut w = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.x[i * self.cols..(i + 1) * self.cols]);
            y.push(self.y[i]);
            w.push(self.w.get(i).copied().unwrap_or(1.0));
        }
        (x, y, w)
    }
}

/// The weights of one dense layer: `w` is `inputs × outputs`, row-major.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LayerWeights {
    #[prost(uint32, tag = "1")]
    pub inputs: u32,
    #[prost(uint32, tag = "2")]
    pub outputs: u32,
    #[prost(float, repeated, tag = "3")]
    pub w: Vec<f32>,
    #[prost(float, repeated, tag = "4")]
    pub b: Vec<f32>,
}

/// A network's weights, outside burn (artifacts and checkpoints).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Weights {
    #[prost(message, repeated, tag = "1")]
    pub layers: Vec<LayerWeights>,
}

/// Training state after an epoch: enough to continue exactly.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainState {
    /// Epochs completed.
    #[prost(uint32, tag = "1")]
    pub epoch: u32,
    #[prost(uint64, tag = "2")]
    pub step: u64,
    #[prost(message, optional, tag = "3")]
    pub weights: Option<Weights>,
    /// burn's optimiser record.
    #[prost(bytes = "vec", tag = "4")]
    pub optimizer: Vec<u8>,
    /// Best validation loss so far and the weights that reached it.
    #[prost(double, optional, tag = "5")]
    pub best_loss: Option<f64>,
    #[prost(message, optional, tag = "6")]
    pub best: Option<Weights>,
    #[prost(uint32, tag = "7")]
    pub best_epoch: u32,
    #[prost(uint32, tag = "8")]
    pub bad_epochs: u32,
    #[prost(bool, tag = "9")]
    pub stopped: bool,
    #[prost(string, tag = "10")]
    pub stop_reason: String,
}

/// One epoch's measurements.
#[derive(Debug, Clone, Default)]
pub struct EpochReport {
    pub epoch: u32,
    pub epochs: u32,
    pub step: u64,
    pub steps_per_epoch: u64,
    pub loss: f64,
    pub val_loss: Option<f64>,
    pub learning_rate: f64,
    pub throughput: f64,
}

/// What the caller wants after an epoch or step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

#[derive(Module, Debug)]
pub struct Net {
    layers: Vec<Linear>,
}

fn param<const D: usize>(id: u64, data: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    let t = Tensor::<D>::from_data(TensorData::new(data, shape), device);
    let mut p = Param::from_tensor(t);
    // Stable ids: the optimiser's state is keyed by them, and a resumed run
    // must find its moments under the same ids.
    p.id = ParamId::from(id);
    p
}

impl Net {
    pub fn from_weights(w: &Weights, device: &Device) -> Self {
        let layers = w
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let (inp, out) = (l.inputs as usize, l.outputs as usize);
                Linear {
                    weight: param(2 * i as u64 + 1, l.w.clone(), [inp, out], device),
                    bias: Some(param(2 * i as u64 + 2, l.b.clone(), [out], device)),
                }
            })
            .collect();
        Self { layers }
    }

    pub fn weights(&self) -> Result<Weights, TrainerError> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let shape = l.weight.val().dims();
            let w = to_vec(l.weight.val())?;
            let b = match &l.bias {
                Some(b) => to_vec(b.val())?,
                None => vec![0.0; shape[1]],
            };
            layers.push(LayerWeights { inputs: shape[0] as u32, outputs: shape[1] as u32, w, b });
        }
        Ok(Weights { layers })
    }

    /// Logits (or values), with dropout masks for the hidden layers when
    /// training.
    fn forward(&self, x: Tensor<2>, act: Activation, masks: Option<&[Tensor<2>]>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                h = match act {
                    Activation::Relu => activation::relu(h),
                    Activation::Tanh => activation::tanh(h),
                    Activation::Gelu => activation::gelu(h),
                };
                if let Some(m) = masks.and_then(|m| m.get(i)) {
                    h = h * m.clone();
                }
            }
        }
        h
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, TrainerError> {
    t.into_data().try_to_vec::<f32>().map_err(|e| TrainerError::Training(format!("reading a tensor: {e:?}")))
}

/// Glorot-uniform weights and zero biases, from the seed.
pub fn init_weights(inputs: usize, hidden: &[usize], head: Head, seed: u64) -> Weights {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0001);
    let mut dims = vec![inputs];
    dims.extend_from_slice(hidden);
    dims.push(head.outputs());
    let layers = dims
        .windows(2)
        .map(|p| {
            let (i, o) = (p[0], p[1]);
            let limit = (6.0 / (i + o) as f64).sqrt() as f32;
            let w = (0..i * o).map(|_| rng.random_range(-limit..=limit)).collect();
            LayerWeights { inputs: i as u32, outputs: o as u32, w, b: vec![0.0; o] }
        })
        .collect();
    Weights { layers }
}

/// Per-row losses of a batch.
fn losses(out: Tensor<2>, y: &[f32], head: Head, device: &Device) -> Tensor<1> {
    let n = y.len();
    match head {
        Head::Binary => {
            let z = out.reshape([n]);
            let t = Tensor::<1>::from_data(TensorData::new(y.to_vec(), [n]), device);
            // Stable BCE with logits: max(z,0) - z*t + ln(1 + e^-|z|).
            z.clone().clamp_min(0.0) - z.clone() * t + z.abs().neg().exp().add_scalar(1.0).log()
        }
        Head::Multiclass(k) => {
            let mut onehot = vec![0.0f32; n * k];
            for (i, c) in y.iter().enumerate() {
                onehot[i * k + *c as usize] = 1.0;
            }
            let t = Tensor::<2>::from_data(TensorData::new(onehot, [n, k]), device);
            (activation::log_softmax(out, 1) * t).sum_dim(1).reshape([n]).neg()
        }
        Head::Regression => {
            let t = Tensor::<1>::from_data(TensorData::new(y.to_vec(), [n]), device);
            let d = out.reshape([n]) - t;
            d.clone() * d
        }
    }
}

fn learning_rate(p: &TrainParams, epoch: u32, step_in_epoch: u64, steps_per_epoch: u64) -> f64 {
    match p.lr_schedule {
        LrSchedule::Constant => p.learning_rate,
        LrSchedule::Step => p.learning_rate * p.lr_gamma.powi((epoch / p.lr_step_epochs.max(1)) as i32),
        LrSchedule::Cosine => {
            let total = (p.epochs as f64) * steps_per_epoch as f64;
            let done = epoch as f64 * steps_per_epoch as f64 + step_in_epoch as f64;
            0.5 * p.learning_rate * (1.0 + (std::f64::consts::PI * done / total.max(1.0)).cos())
        }
    }
}

fn optimizer(p: &TrainParams) -> ModuleOptimizer {
    let decay = (p.weight_decay > 0.0).then(|| WeightDecayConfig::new(p.weight_decay as f32));
    match p.optimizer {
        OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
        OptimizerKind::AdamW => AdamWConfig::new().with_weight_decay(p.weight_decay as f32).init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((p.momentum > 0.0).then(|| MomentumConfig::new().with_momentum(p.momentum)))
            .init(),
    }
}

/// Mean loss of a whole matrix, in batches, without gradients.
pub fn evaluate_loss(w: &Weights, p: &TrainParams, head: Head, data: &Matrix) -> Result<f64, TrainerError> {
    if data.rows == 0 {
        return Ok(f64::NAN);
    }
    let device = Device::flex();
    let net = Net::from_weights(w, &device);
    let mut total = 0.0f64;
    for start in (0..data.rows).step_by(4096) {
        let idx: Vec<usize> = (start..(start + 4096).min(data.rows)).collect();
        let (x, y, _) = data.batch(&idx);
        let xt = Tensor::<2>::from_data(TensorData::new(x, [idx.len(), data.cols]), &device);
        let l = losses(net.forward(xt, p.activation, None), &y, head, &device).sum();
        total += f64::from(to_vec(l)?.first().copied().unwrap_or(0.0));
    }
    Ok(total / data.rows as f64)
}

/// Network outputs for every row: probabilities (`rows × k`, binary as
/// `[1 - p, p]`) for classification, standardised values for regression.
pub fn predict(
    w: &Weights,
    act: Activation,
    head: Head,
    x: &[f32],
    rows: usize,
    cols: usize,
) -> Result<Vec<f32>, TrainerError> {
    let device = Device::flex();
    predict_with(&Net::from_weights(w, &device), &device, act, head, x, rows, cols)
}

/// As [`predict`], with a network built once (serving scores many batches).
pub fn predict_with(
    net: &Net,
    device: &Device,
    act: Activation,
    head: Head,
    x: &[f32],
    rows: usize,
    cols: usize,
) -> Result<Vec<f32>, TrainerError> {
    let mut out = Vec::with_capacity(rows * head.outputs().max(2));
    for start in (0..rows).step_by(4096) {
        let end = (start + 4096).min(rows);
        let xt =
            Tensor::<2>::from_data(TensorData::new(x[start * cols..end * cols].to_vec(), [end - start, cols]), device);
        let z = net.forward(xt, act, None);
        match head {
            Head::Binary => {
                for p in to_vec(activation::sigmoid(z))? {
                    out.push(1.0 - p);
                    out.push(p);
                }
            }
            Head::Multiclass(_) => out.extend(to_vec(activation::softmax(z, 1))?),
            Head::Regression => out.extend(to_vec(z)?),
        }
    }
    Ok(out)
}

/// Trains from `resume` (or from fresh weights), calling `on_epoch` after
/// every epoch with the state to checkpoint and `on_step` after every step
/// (either may stop the run). Answers the final state: its `weights` are
/// the best validation weights when early stopping ran.
pub fn train(
    p: &TrainParams,
    head: Head,
    train: &Matrix,
    val: Option<&Matrix>,
    resume: Option<TrainState>,
    on_step: &mut dyn FnMut(u32, u64, f64) -> Control,
    on_epoch: &mut dyn FnMut(&EpochReport, &TrainState) -> Result<Control, TrainerError>,
) -> Result<TrainState, TrainerError> {
    if train.rows == 0 {
        return Err(TrainerError::Precondition("the training split has no rows".into()));
    }
    let device = Device::flex().autodiff();
    let mut state = match resume {
        Some(s) => s,
        None => {
            TrainState { weights: Some(init_weights(train.cols, &p.hidden_layers, head, p.seed)), ..Default::default() }
        }
    };
    let mut net = Net::from_weights(&state.weights.clone().unwrap_or_default(), &device);
    let mut optim = optimizer(p);
    if !state.optimizer.is_empty() {
        optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(state.optimizer.clone()))
            .map_err(|e| TrainerError::Training(format!("restoring the optimiser state: {e:?}")))?;
    }
    let batch = p.batch_size.min(train.rows).max(1);
    let steps_per_epoch = train.rows.div_ceil(batch) as u64;
    let use_val = val.is_some_and(|v| v.rows > 0);
    while state.epoch < p.epochs && !state.stopped {
        let epoch = state.epoch;
        let started = std::time::Instant::now();
        // One generator per epoch, so a resumed run shuffles as the
        // uninterrupted one did.
        let mut rng = StdRng::seed_from_u64(p.seed ^ (u64::from(epoch) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut order: Vec<usize> = (0..train.rows).collect();
        order.shuffle(&mut rng);
        let mut sum = 0.0f64;
        let mut seen = 0usize;
        for (s, idx) in order.chunks(batch).enumerate() {
            let (x, y, w) = train.batch(idx);
            let n = idx.len();
            let xt = Tensor::<2>::from_data(TensorData::new(x, [n, train.cols]), &device);
            let masks: Option<Vec<Tensor<2>>> = (p.dropout > 0.0).then(|| {
                let keep = 1.0 - p.dropout;
                p.hidden_layers
                    .iter()
                    .map(|&h| {
                        let m: Vec<f32> = (0..n * h)
                            .map(|_| if rng.random::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 })
                            .collect();
                        Tensor::<2>::from_data(TensorData::new(m, [n, h]), &device)
                    })
                    .collect()
            });
            let out = net.forward(xt, p.activation, masks.as_deref());
            let per_row = losses(out, &y, head, &device);
            let wt = Tensor::<1>::from_data(TensorData::new(w.clone(), [n]), &device);
            let wsum: f32 = w.iter().sum();
            let loss = (per_row * wt).sum().div_scalar(wsum.max(f32::MIN_POSITIVE));
            let value = f64::from(to_vec(loss.clone().inner())?.first().copied().unwrap_or(f32::NAN));
            if !value.is_finite() {
                return Err(TrainerError::Training(format!(
                    "the loss became {value} at epoch {}, step {}: lower learning_rate or standardise the data",
                    epoch + 1,
                    s + 1
                )));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            let lr = learning_rate(p, epoch, s as u64, steps_per_epoch);
            net = optim.step(lr, net, grads);
            state.step += 1;
            sum += value * n as f64;
            seen += n;
            if on_step(epoch + 1, state.step, sum / seen as f64) == Control::Stop {
                return Err(TrainerError::Canceled);
            }
        }
        state.epoch = epoch + 1;
        let weights = net.weights()?;
        let val_loss = match val {
            Some(v) if use_val => Some(evaluate_loss(&weights, p, head, v)?),
            _ => None,
        };
        if let Some(vl) = val_loss {
            if state.best_loss.is_none_or(|b| vl < b) {
                state.best_loss = Some(vl);
                state.best = Some(weights.clone());
                state.best_epoch = state.epoch;
                state.bad_epochs = 0;
            } else {
                state.bad_epochs += 1;
                if p.early_stopping_patience > 0 && state.bad_epochs >= p.early_stopping_patience {
                    state.stopped = true;
                    state.stop_reason = format!(
                        "early stopping at epoch {}: validation loss did not improve for {} epochs (best {:.6} at epoch {})",
                        state.epoch,
                        state.bad_epochs,
                        state.best_loss.unwrap_or(f64::NAN),
                        state.best_epoch
                    );
                }
            }
        }
        state.weights = Some(weights);
        state.optimizer = optim
            .into_bytes()
            .map_err(|e| TrainerError::Training(format!("saving the optimiser state: {e:?}")))?
            .to_vec();
        let report = EpochReport {
            epoch: state.epoch,
            epochs: p.epochs,
            step: state.step,
            steps_per_epoch,
            loss: sum / seen.max(1) as f64,
            val_loss,
            learning_rate: learning_rate(p, epoch, steps_per_epoch, steps_per_epoch),
            throughput: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
        };
        if on_epoch(&report, &state)? == Control::Stop {
            return Err(TrainerError::Canceled);
        }
    }
    if !state.stopped {
        state.stop_reason = format!("{} epochs completed", state.epoch);
        state.stopped = true;
    }
    // The model kept is the one with the best validation loss.
    if let Some(best) = state.best.clone() {
        state.weights = Some(best);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params;
    use pulse_proto::trainer::v1::Algorithm;

    /// XOR-like data an MLP can fit and a linear model cannot.
    fn data(rows: usize, seed: u64) -> Matrix {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut m = Matrix { cols: 2, rows, ..Default::default() };
        for _ in 0..rows {
            let (a, b): (f32, f32) = (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
            m.x.extend([a, b]);
            m.y.push(if (a > 0.0) ^ (b > 0.0) { 1.0 } else { 0.0 });
        }
        m
    }

    fn mlp(epochs: u32) -> TrainParams {
        let mut p = params::parse(Algorithm::MlpClassifier, None, 42).unwrap();
        p.epochs = epochs;
        p.batch_size = 32;
        p.hidden_layers = vec![16];
        p.dropout = 0.1;
        p.early_stopping_patience = 0;
        p
    }

    fn run(
        p: &TrainParams,
        train: &Matrix,
        val: &Matrix,
        resume: Option<TrainState>,
    ) -> Result<TrainState, TrainerError> {
        train_with(p, train, val, resume, u32::MAX).map(|(s, _)| s)
    }

    /// Trains, stopping after `stop_after` epochs; answers the final state
    /// and the state at the stop.
    fn train_with(
        p: &TrainParams,
        train: &Matrix,
        val: &Matrix,
        resume: Option<TrainState>,
        stop_after: u32,
    ) -> Result<(TrainState, Option<TrainState>), TrainerError> {
        let mut saved = None;
        let result =
            super::train(p, Head::Binary, train, Some(val), resume, &mut |_, _, _| Control::Continue, &mut |r, s| {
                if r.epoch == stop_after {
                    saved = Some(s.clone());
                    return Ok(Control::Stop);
                }
                Ok(Control::Continue)
            });
        match result {
            Ok(s) => Ok((s, saved)),
            Err(TrainerError::Canceled) => Ok((TrainState::default(), saved)),
            Err(e) => Err(e),
        }
    }

    #[test]
    fn the_same_seed_trains_the_same_bits_and_learns() {
        let (train, val) = (data(600, 1), data(200, 2));
        let a = run(&mlp(12), &train, &val, None).unwrap();
        let b = run(&mlp(12), &train, &val, None).unwrap();
        assert_eq!(a.weights, b.weights, "bit-identical weights");
        let mut other = mlp(12);
        other.seed = 43;
        assert_ne!(run(&other, &train, &val, None).unwrap().weights, a.weights);
        // It learned XOR: far better than chance on held-out rows.
        let probs = predict(a.weights.as_ref().unwrap(), Activation::Relu, Head::Binary, &val.x, val.rows, 2).unwrap();
        let correct = (0..val.rows).filter(|&i| (probs[2 * i + 1] > 0.5) == (val.y[i] > 0.5)).count();
        assert!(correct as f64 / val.rows as f64 > 0.85, "accuracy {correct}/{}", val.rows);
    }

    #[test]
    fn resuming_from_a_checkpoint_ends_where_the_uninterrupted_run_ends() {
        let (train, val) = (data(400, 3), data(100, 4));
        let p = mlp(6);
        let whole = run(&p, &train, &val, None).unwrap();
        let (_, at3) = train_with(&p, &train, &val, None, 3).unwrap();
        let at3 = at3.expect("stopped at epoch 3");
        assert_eq!(at3.epoch, 3);
        // Through the checkpoint's bytes, as a resumed worker reads them.
        use prost::Message;
        let restored = TrainState::decode(at3.encode_to_vec().as_slice()).unwrap();
        let resumed = run(&p, &train, &val, Some(restored)).unwrap();
        assert_eq!(resumed.weights, whole.weights, "resumed weights differ from the uninterrupted run");
        assert_eq!(resumed.step, whole.step);
    }

    #[test]
    fn early_stopping_keeps_the_best_weights() {
        let (train, val) = (data(300, 5), data(100, 6));
        let mut p = mlp(200);
        p.learning_rate = 0.05;
        p.early_stopping_patience = 3;
        let s = run(&p, &train, &val, None).unwrap();
        assert!(s.epoch < 200, "stopped early at {}", s.epoch);
        assert!(s.stop_reason.starts_with("early stopping"), "{}", s.stop_reason);
        assert_eq!(s.weights, s.best);
        let best = evaluate_loss(s.weights.as_ref().unwrap(), &p, Head::Binary, &val).unwrap();
        assert!((best - s.best_loss.unwrap()).abs() < 1e-9);
    }
}
