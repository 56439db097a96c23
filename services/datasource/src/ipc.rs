//! Arrow IPC stream framing for gRPC: the schema message first, then one
//! message per record batch. Concatenated, the messages form one valid Arrow
//! IPC stream (what `pyarrow.ipc.open_stream` reads).

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;

use crate::error::DatasourceError;

pub struct IpcFramer {
    writer: StreamWriter<Vec<u8>>,
}

impl IpcFramer {
    /// Starts a stream; [`IpcFramer::take`] then answers the schema message.
    pub fn new(schema: &SchemaRef) -> Result<Self, DatasourceError> {
        let writer = StreamWriter::try_new_with_options(Vec::new(), schema, IpcWriteOptions::default())?;
        Ok(Self { writer })
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(self.writer.get_mut())
    }

    /// One batch (with any dictionaries it needs) as IPC bytes.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, DatasourceError> {
        self.writer.write(batch)?;
        Ok(self.take())
    }
}

/// Reads a complete IPC stream back (tests and clients).
pub fn read_stream(bytes: &[u8]) -> Result<Vec<RecordBatch>, DatasourceError> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}
