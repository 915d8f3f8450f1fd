//! Sorting a stream that is already running with DataFusion's external sort:
//! memory stays within the task's pool and the overflow spills to disk.
//! Used where an in-memory plan finds mid-stream that it cannot go on.

use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Sorts `stream` by `ordering` (over the stream's schema).
pub(crate) fn sort_stream(
    stream: SendableRecordBatchStream,
    ordering: LexOrdering,
    task_ctx: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    let schema = stream.schema();
    let source = Arc::new(OnceStream {
        schema: schema.clone(),
        stream: Mutex::new(Some(stream)),
    });
    let scan = Arc::new(StreamingTableExec::try_new(
        schema,
        vec![source],
        None,
        vec![],
        false,
        None,
    )?);
    SortExec::new(ordering, scan).execute(0, task_ctx)
}

/// Hands one stream to a plan node, once.
struct OnceStream {
    schema: arrow::datatypes::SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnceStream")
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &arrow::datatypes::SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        self.stream
            .lock()
            .expect("once stream lock")
            .take()
            .expect("a once stream is executed once")
    }
}
