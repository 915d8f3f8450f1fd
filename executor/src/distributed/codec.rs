//! The physical codec of distributed plans: chainbatch's operators and
//! functions by `ChainbatchCodec`, everything else (Ballista's shuffle
//! readers and writers, DataFusion extensions) by Ballista's own codec.

use crate::layout::plan_codec::{CHAINBATCH_TAG_PREFIX, ChainbatchCodec};
use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use std::sync::Arc;

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
        if buf.starts_with(CHAINBATCH_TAG_PREFIX) {
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
        if ChainbatchCodec::encodes(node.as_ref()) {
            self.chainbatch.try_encode(node, buf, proto_converter)
        } else {
            self.ballista.try_encode(node, buf, proto_converter)
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.chainbatch.try_decode_udf(name, buf)
    }
}
