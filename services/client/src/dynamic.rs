//! Any unary Pulse RPC by its method name, with the request and the answer in
//! the proto3 JSON mapping: what a pipeline's action step calls. The
//! contracts' descriptor sets (compiled into `pulse-proto`) type both sides,
//! so a request is checked field by field before it is sent.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Buf, BufMut};
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use pulse_proto::MethodInfo;
use pulse_proto::tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use pulse_proto::tonic::codegen::http::uri::PathAndQuery;
use pulse_proto::tonic::metadata::MetadataValue;
use pulse_proto::tonic::transport::Channel;
use pulse_proto::tonic::{Request, Status};

use crate::{ClientError, Result};

/// Every message of every Pulse service.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = DescriptorPool::new();
        for service in pulse_proto::SERVICES {
            // Shared imports (common.proto, well-known types) repeat across
            // the sets; identical files are skipped.
            pool.decode_file_descriptor_set(service.descriptor_set)
                .unwrap_or_else(|e| panic!("descriptor set of {} does not decode: {e}", service.name));
        }
        pool
    })
}

/// A unary method resolved against the contracts.
#[derive(Debug, Clone)]
pub struct Method {
    /// `package.Service/Method`.
    pub name: String,
    pub info: &'static MethodInfo,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
}

/// Resolves `pulse.trainer.v1.TrainerService/StartTraining`. Unknown,
/// streaming and admin-only methods are refused: pipelines act for a
/// tenant, one request and one answer at a time.
pub fn method(name: &str) -> std::result::Result<Method, String> {
    let name = name.trim_start_matches('/');
    let (service, rpc) = name
        .split_once('/')
        .ok_or_else(|| format!("'{name}' is not a method name; write package.Service/Method, e.g. pulse.trainer.v1.TrainerService/StartTraining"))?;
    let info = pulse_proto::method(&format!("/{name}")).ok_or_else(|| {
        let known: Vec<&str> = pulse_proto::SERVICES.iter().map(|s| s.name).collect();
        format!("unknown method '{name}'; services are {}", known.join(", "))
    })?;
    if info.client_streaming || info.server_streaming {
        return Err(format!("{name} streams; a step can call unary methods only"));
    }
    if info.admin_only {
        return Err(format!("{name} needs the admin key; a step acts for its tenant"));
    }
    let descriptor = pool()
        .get_service_by_name(service)
        .and_then(|s| s.methods().find(|m| m.name() == rpc))
        .ok_or_else(|| format!("unknown method '{name}'"))?;
    Ok(Method { name: name.to_string(), info, input: descriptor.input(), output: descriptor.output() })
}

impl Method {
    /// The request as protobuf bytes. Unknown fields, wrong types and bad
    /// enum names are errors naming the field.
    pub fn encode(&self, request: &serde_json::Value) -> std::result::Result<Vec<u8>, String> {
        use pulse_proto::prost::Message as _;
        let message = DynamicMessage::deserialize_with_options(
            self.input.clone(),
            request.clone(),
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| format!("request is not a valid {}: {e}", self.input.full_name()))?;
        Ok(message.encode_to_vec())
    }

    /// The answer in the JSON mapping, with the contracts' field names
    /// (`model_version`, not `modelVersion`), 64-bit integers as numbers
    /// and default values present, so `${steps.promote.output.promoted}` is
    /// `false`, not missing.
    pub fn decode(&self, answer: &[u8]) -> std::result::Result<serde_json::Value, String> {
        let message = DynamicMessage::decode(self.output.clone(), answer)
            .map_err(|e| format!("answer is not a {}: {e}", self.output.full_name()))?;
        message
            .serialize_with_options(
                serde_json::value::Serializer,
                &SerializeOptions::new()
                    .use_proto_field_name(true)
                    .stringify_64_bit_integers(false)
                    .skip_default_fields(false),
            )
            .map_err(|e| format!("answer does not convert to JSON: {e}"))
    }

    /// Sends `body` (from [`Method::encode`]) with these metadata entries.
    pub async fn call(
        &self,
        channel: Channel,
        body: Vec<u8>,
        metadata: &[(&'static str, String)],
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let mut grpc = pulse_proto::tonic::client::Grpc::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        grpc.ready().await.map_err(|e| ClientError::Status {
            code: pulse_proto::tonic::Code::Unavailable,
            message: format!("connection not ready: {}", crate::error::source_chain(&e)),
        })?;
        let mut request = Request::new(body);
        request.set_timeout(timeout);
        for (key, value) in metadata {
            let value: MetadataValue<_> = value
                .parse()
                .map_err(|_| ClientError::InvalidArgument(format!("metadata {key}: must be printable ASCII")))?;
            request.metadata_mut().insert(*key, value);
        }
        let path = PathAndQuery::try_from(format!("/{}", self.name))
            .map_err(|e| ClientError::InvalidArgument(format!("method '{}': {e}", self.name)))?;
        Ok(grpc.unary(request, path, RawCodec).await?.into_inner())
    }
}

/// Passes protobuf bytes through unchanged.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> std::result::Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> std::result::Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_unary_methods_and_refuses_the_rest() {
        let m = method("pulse.trainer.v1.TrainerService/StartTraining").unwrap();
        assert_eq!(m.input.full_name(), "pulse.trainer.v1.StartTrainingRequest");
        assert!(m.info.mutation);
        assert!(method("pulse.trainer.v1.TrainerService/Nope").unwrap_err().contains("unknown method"));
        assert!(method("StartTraining").unwrap_err().contains("package.Service/Method"));
        assert!(method("pulse.trainer.v1.TrainerService/WatchTrainingJob").unwrap_err().contains("streams"));
        assert!(method("pulse.admin.v1.AdminService/CreateTenant").unwrap_err().contains("admin key"));
    }

    #[test]
    fn json_round_trips_through_the_contract() {
        let m = method("pulse.trainer.v1.TrainerService/StartTraining").unwrap();
        let bytes = m
            .encode(&serde_json::json!({
                "dataset": {"dataset_id": "ds_1", "version": 3},
                "model": "churn",
                "algorithm": "ALGORITHM_LOGISTIC_REGRESSION",
                "params": {"epochs": 5}
            }))
            .unwrap();
        use pulse_proto::prost::Message as _;
        let decoded = pulse_proto::trainer::v1::StartTrainingRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.dataset.unwrap().version, 3);
        assert_eq!(decoded.algorithm, pulse_proto::trainer::v1::Algorithm::LogisticRegression as i32);
        let err = m.encode(&serde_json::json!({"modle": "churn"})).unwrap_err();
        assert!(err.contains("modle"), "{err}");
        let err = m.encode(&serde_json::json!({"algorithm": "FAST"})).unwrap_err();
        assert!(err.contains("FAST") || err.contains("algorithm"), "{err}");

        let promote = method("pulse.trainer.v1.TrainerService/PromoteModel").unwrap();
        let answer = pulse_proto::trainer::v1::PromoteModelResponse { refusal: "gate".into(), ..Default::default() };
        let json = promote.decode(&answer.encode_to_vec()).unwrap();
        assert_eq!(json["promoted"], serde_json::json!(false));
        assert_eq!(json["refusal"], serde_json::json!("gate"));
    }
}
