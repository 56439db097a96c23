//! Reading a version back: every chunk's SHA-256 is checked against the
//! manifest before its rows are decoded, and rows replaced by a later layer
//! (an incremental version's newer rows with the same primary key) are
//! filtered out, so a version reads exactly as a full snapshot would.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::record_batch::RecordBatch;
use arrow_row::{RowConverter, SortField};
use bytes::Bytes;
use futures::Stream;
use pulse_common::objects::{TenantObjects, sha256_hex};
use pulse_proto::snapshot::v1::{Chunk, Manifest};

use crate::chunk::read_chunk;
use crate::error::SnapshotError;

/// Fetches a chunk and checks it against the manifest.
pub async fn fetch_chunk(objects: &TenantObjects, manifest: &Manifest, chunk: &Chunk) -> Result<Bytes, SnapshotError> {
    let r = manifest.r#ref.clone().unwrap_or_default();
    let loss = |detail: String| SnapshotError::DataLoss {
        dataset: r.dataset_id.clone(),
        version: r.version,
        index: chunk.index,
        key: chunk.key.clone(),
        detail,
    };
    let bytes = objects.get(&chunk.key).await.map_err(|e| match e {
        pulse_common::objects::ObjectError::Corrupt { actual, .. } => {
            loss(format!("stored bytes hash to {actual}, the manifest says {}", chunk.sha256))
        }
        pulse_common::objects::ObjectError::NotFound(_) => loss("the chunk's object is missing".into()),
        other => SnapshotError::Object(other),
    })?;
    let actual = sha256_hex(&bytes);
    if actual != chunk.sha256 {
        return Err(loss(format!("stored bytes hash to {actual}, the manifest says {}", chunk.sha256)));
    }
    Ok(bytes)
}

/// The primary-key rows of every layer newer than each layer, so older rows
/// whose key reappears later are skipped.
struct Replaced {
    converter: RowConverter,
    /// Keys written by versions greater than the map key.
    newer_than: Vec<(u64, Arc<HashSet<Vec<u8>>>)>,
}

impl Replaced {
    fn skip_mask(
        &self,
        layer: u64,
        batch: &RecordBatch,
        key: &[String],
    ) -> Result<Option<BooleanArray>, SnapshotError> {
        let Some((_, set)) = self.newer_than.iter().find(|(v, _)| *v == layer) else { return Ok(None) };
        if set.is_empty() {
            return Ok(None);
        }
        let cols = key
            .iter()
            .map(|k| {
                batch
                    .column_by_name(k)
                    .cloned()
                    .ok_or_else(|| SnapshotError::Precondition(format!("key column {k} missing")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.converter.convert_columns(&cols)?;
        Ok(Some(BooleanArray::from(
            (0..batch.num_rows()).map(|i| !set.contains(rows.row(i).as_ref())).collect::<Vec<_>>(),
        )))
    }
}

/// Reads the keys of the layers above the base so older rows can be
/// filtered. Memory holds the keys of incremental layers only.
async fn replaced(objects: &TenantObjects, manifest: &Manifest) -> Result<Option<Replaced>, SnapshotError> {
    let source = manifest.source.clone().unwrap_or_default();
    let key = source.primary_key.clone();
    let mut layers: Vec<u64> = manifest.chunks.iter().map(|c| c.written_by_version).collect();
    layers.sort_unstable();
    layers.dedup();
    if key.is_empty() || layers.len() < 2 {
        return Ok(None);
    }
    let schema = pulse_datasource::connector::values::arrow_schema(&manifest.schema.clone().unwrap_or_default());
    let fields = key
        .iter()
        .map(|k| {
            schema
                .field_with_name(k)
                .map(|f| SortField::new(f.data_type().clone()))
                .map_err(|_| SnapshotError::Precondition(format!("primary key column '{k}' is not in the schema")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let converter = RowConverter::new(fields)?;
    // Keys per layer, from the newest down.
    let mut acc: HashSet<Vec<u8>> = HashSet::new();
    let mut newer_than = Vec::new();
    for layer in layers.iter().rev() {
        newer_than.push((*layer, Arc::new(acc.clone())));
        if layer == layers.first().unwrap_or(&0) {
            break;
        }
        for chunk in manifest.chunks.iter().filter(|c| c.written_by_version == *layer) {
            let bytes = fetch_chunk(objects, manifest, chunk).await?;
            for batch in read_chunk(bytes, Some(&key))? {
                let rows = converter.convert_columns(batch.columns())?;
                for i in 0..batch.num_rows() {
                    acc.insert(rows.row(i).as_ref().to_vec());
                }
            }
        }
    }
    Ok(Some(Replaced { converter, newer_than }))
}

/// Streams a version's rows: chunk by chunk (verified), the requested
/// columns in order, replaced rows filtered out.
pub fn read_version(
    objects: TenantObjects,
    manifest: Manifest,
    columns: Vec<String>,
    chunks: Vec<u32>,
    limit: Option<u64>,
) -> impl Stream<Item = Result<(u32, RecordBatch), SnapshotError>> + Send {
    async_stream::try_stream! {
        let replaced = replaced(&objects, &manifest).await?;
        let key = manifest.source.clone().unwrap_or_default().primary_key;
        let mut left = limit.unwrap_or(u64::MAX);
        for chunk in &manifest.chunks {
            if left == 0 {
                break;
            }
            if !chunks.is_empty() && !chunks.contains(&chunk.index) {
                continue;
            }
            let bytes = fetch_chunk(&objects, &manifest, chunk).await?;
            let need_key = replaced.is_some() && !columns.is_empty();
            let read_cols: Option<Vec<String>> = if columns.is_empty() {
                None
            } else if need_key {
                let mut c = columns.clone();
                c.extend(key.iter().filter(|k| !columns.contains(k)).cloned());
                Some(c)
            } else {
                Some(columns.clone())
            };
            let batches = tokio::task::spawn_blocking(move || read_chunk(bytes, read_cols.as_deref()))
                .await
                .map_err(|e| SnapshotError::Precondition(format!("chunk decode task failed: {e}")))??;
            for mut batch in batches {
                let mask = match &replaced {
                    Some(r) => r.skip_mask(chunk.written_by_version, &batch, &key)?,
                    None => None,
                };
                if let Some(mask) = mask {
                    batch = arrow::compute::filter_record_batch(&batch, &mask)?;
                }
                if need_key {
                    batch = batch.project(&(0..columns.len()).collect::<Vec<_>>())?;
                }
                if batch.num_rows() == 0 {
                    continue;
                }
                if (batch.num_rows() as u64) > left {
                    batch = batch.slice(0, left as usize);
                }
                left -= batch.num_rows() as u64;
                yield (chunk.index, batch);
                if left == 0 {
                    break;
                }
            }
        }
    }
}
