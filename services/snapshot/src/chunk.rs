//! Parquet chunks: rows cut at fixed row counts and written with fixed
//! settings, in fixed-size slices, so the same rows always give the same
//! bytes — which is what makes a resumed extraction hash like an
//! uninterrupted one.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::error::SnapshotError;

/// Rows handed to the Parquet writer at a time, counted from the chunk's
/// first row (page boundaries then never depend on source batch sizes).
const WRITE_SLICE: usize = 8192;

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by("pulse".to_string())
        .set_max_row_group_row_count(Some(1 << 30))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build()
}

/// One chunk being written.
pub struct ChunkWriter {
    schema: SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    rows: usize,
}

impl ChunkWriter {
    pub fn new(schema: SchemaRef) -> Result<Self, SnapshotError> {
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties()))?;
        Ok(Self { schema, writer, pending: Vec::new(), pending_rows: 0, rows: 0 })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn push(&mut self, batch: RecordBatch) -> Result<(), SnapshotError> {
        self.rows += batch.num_rows();
        self.pending_rows += batch.num_rows();
        self.pending.push(batch);
        if self.pending_rows >= WRITE_SLICE {
            self.drain(false)?;
        }
        Ok(())
    }

    fn drain(&mut self, all: bool) -> Result<(), SnapshotError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let merged = arrow::compute::concat_batches(&self.schema, &self.pending)?;
        self.pending.clear();
        let mut offset = 0;
        while merged.num_rows() - offset >= WRITE_SLICE {
            self.writer.write(&merged.slice(offset, WRITE_SLICE))?;
            offset += WRITE_SLICE;
        }
        let rest = merged.num_rows() - offset;
        if rest > 0 {
            if all {
                self.writer.write(&merged.slice(offset, rest))?;
            } else {
                self.pending.push(merged.slice(offset, rest));
            }
        }
        self.pending_rows = if all { 0 } else { rest };
        Ok(())
    }

    /// The chunk's bytes.
    pub fn finish(mut self) -> Result<Bytes, SnapshotError> {
        self.drain(true)?;
        Ok(Bytes::from(self.writer.into_inner()?))
    }
}

/// Splits a stream of batches at multiples of `chunk_rows`.
pub struct Chunker {
    chunk_rows: usize,
    schema: SchemaRef,
    current: Option<ChunkWriter>,
    /// The last row pushed into the current chunk.
    last: Option<RecordBatch>,
}

impl Chunker {
    pub fn new(schema: SchemaRef, chunk_rows: usize) -> Self {
        Self { chunk_rows: chunk_rows.max(1), schema, current: None, last: None }
    }

    /// Adds a batch; answers the chunks it completed (bytes and last row of
    /// each, for the resume key).
    pub fn push(&mut self, mut batch: RecordBatch) -> Result<Vec<(Bytes, usize, RecordBatch)>, SnapshotError> {
        let mut done = Vec::new();
        while batch.num_rows() > 0 {
            let writer = match &mut self.current {
                Some(w) => w,
                None => self.current.insert(ChunkWriter::new(self.schema.clone())?),
            };
            let room = self.chunk_rows - writer.rows();
            let take = room.min(batch.num_rows());
            let head = batch.slice(0, take);
            batch = batch.slice(take, batch.num_rows() - take);
            let last = head.slice(take - 1, 1);
            writer.push(head)?;
            if writer.rows() == self.chunk_rows {
                let w = self.current.take().ok_or_else(|| SnapshotError::Precondition("no chunk".into()))?;
                let rows = w.rows();
                done.push((w.finish()?, rows, last));
                self.last = None;
            } else if batch.num_rows() == 0 {
                self.last = Some(last);
            }
        }
        Ok(done)
    }

    /// The last, partial chunk, if any rows are left.
    pub fn finish(mut self) -> Result<Option<(Bytes, usize, RecordBatch)>, SnapshotError> {
        match (self.current.take(), self.last.take()) {
            (Some(w), Some(last)) if w.rows() > 0 => {
                let rows = w.rows();
                Ok(Some((w.finish()?, rows, last)))
            }
            _ => Ok(None),
        }
    }
}

/// Reads a chunk's record batches (optionally some columns only).
pub fn read_chunk(bytes: Bytes, columns: Option<&[String]>) -> Result<Vec<RecordBatch>, SnapshotError> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let builder = match columns {
        Some(cols) => {
            let schema = builder.schema().clone();
            let indices: Vec<usize> = cols.iter().filter_map(|c| schema.index_of(c).ok()).collect();
            let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices);
            builder.with_projection(mask)
        }
        None => builder,
    };
    let reader = builder.with_batch_size(65_536).build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    match columns {
        // The projection keeps file order; answer the requested order.
        Some(cols) => batches
            .into_iter()
            .map(|b| {
                let idx: Vec<usize> = cols.iter().filter_map(|c| b.schema().index_of(c).ok()).collect();
                Ok(b.project(&idx)?)
            })
            .collect(),
        None => Ok(batches),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use pulse_proto::common::v1::{Column, DataType, Schema};

    use super::*;

    fn batch(schema: &SchemaRef, from: i64, n: i64) -> RecordBatch {
        let ids: Vec<i64> = (from..from + n).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("row-{i}")).collect();
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))])
            .unwrap()
    }

    /// The same rows give the same chunk bytes however the source batched
    /// them: what lets a resumed extraction hash like an uninterrupted one.
    #[test]
    fn chunk_bytes_do_not_depend_on_batch_boundaries() {
        let schema = pulse_datasource::connector::values::arrow_schema(&Schema {
            columns: vec![
                Column {
                    name: "id".into(),
                    data_type: DataType::Int as i32,
                    source_type: "bigint".into(),
                    nullable: false,
                    primary_key: true,
                },
                Column {
                    name: "name".into(),
                    data_type: DataType::String as i32,
                    source_type: "text".into(),
                    nullable: true,
                    primary_key: false,
                },
            ],
        });
        let run = |sizes: &[i64]| {
            let mut chunker = Chunker::new(schema.clone(), 25_000);
            let mut out = Vec::new();
            let mut from = 0;
            for n in sizes {
                out.extend(chunker.push(batch(&schema, from, *n)).unwrap().into_iter().map(|(b, rows, _)| (b, rows)));
                from += n;
            }
            out.extend(chunker.finish().unwrap().map(|(b, rows, _)| (b, rows)));
            out
        };
        let a = run(&[60_000]);
        let b = run(&[1, 9_999, 20_000, 7, 29_993]);
        assert_eq!(a.iter().map(|c| c.1).collect::<Vec<_>>(), vec![25_000, 25_000, 10_000]);
        assert_eq!(a, b);
        assert_eq!(read_chunk(a[2].0.clone(), None).unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 10_000);
    }
}
