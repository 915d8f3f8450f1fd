//! The physical codec of distributed plans: stages of task specs here,
//! chainbatch's other operators and functions by `ChainbatchCodec`,
//! everything else (Ballista's shuffle readers and writers, DataFusion
//! extensions) by Ballista's own codec.

use super::tasks::{TaskSpecsConfig, TaskSpecsExec};
use crate::layout::plan_codec::{CHAINBATCH_TAG_PREFIX, ChainbatchCodec};
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use std::sync::Arc;

/// Tags an encoded [`TaskSpecsExec`] (its job attempt, as JSON; the specs
/// are its input, an in-memory scan).
const TASK_SPECS_TAG: &[u8] = b"cb.task_specs.v1:";

/// The codec of distributed plans: nodes tagged with chainbatch's prefix by
/// `ChainbatchCodec`, all other nodes by Ballista's codec; functions by chainbatch.
#[derive(Debug, Default)]
pub struct DistributedCodec {
    chainbatch: ChainbatchCodec,
    ballista: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for DistributedCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(json) = buf.strip_prefix(TASK_SPECS_TAG) {
            let config: TaskSpecsConfig = serde_json::from_slice(json).map_err(|e| {
                DataFusionError::Internal(format!("bad TaskSpecsExec encoding: {e}"))
            })?;
            let [input] = inputs else {
                return Err(DataFusionError::Internal(
                    "TaskSpecsExec takes one input".into(),
                ));
            };
            Ok(Arc::new(TaskSpecsExec::new(input.clone(), config)))
        } else if buf.starts_with(CHAINBATCH_TAG_PREFIX) {
            self.chainbatch
                .try_decode(buf, inputs, ctx, proto_converter)
        } else {
            self.ballista.try_decode(buf, inputs, ctx, proto_converter)
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(tasks) = (node.as_ref() as &dyn std::any::Any).downcast_ref::<TaskSpecsExec>() {
            buf.extend_from_slice(TASK_SPECS_TAG);
            serde_json::to_writer(buf, tasks.config())
                .map_err(|e| DataFusionError::Internal(e.to_string()))
        } else if ChainbatchCodec::encodes(node.as_ref()) {
            self.chainbatch.try_encode(node, buf, proto_converter)
        } else {
            self.ballista.try_encode(node, buf, proto_converter)
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.chainbatch.try_decode_udf(name, buf)
    }
}
