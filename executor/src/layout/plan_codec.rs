//! Physical codec for chainbatch's operators, so a plan holding a
//! `LayoutSinkExec` can be serialised and run elsewhere (a Ballista executor).

use crate::layout::sink::{LayoutSinkConfig, LayoutSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use std::sync::Arc;

/// Encodes `LayoutSinkExec` nodes (their config as tagged JSON) and decodes them,
/// and finds chainbatch's SQL functions by name.
#[derive(Debug, Default)]
pub struct ChainbatchCodec;

/// Every chainbatch node's encoding starts with this, so a codec that wraps
/// this one with another (Ballista's) can tell whose node it decodes.
pub const CHAINBATCH_TAG_PREFIX: &[u8] = b"cb.";
/// Tags the encoded node so future operators can share the codec.
const LAYOUT_SINK_TAG: &[u8] = b"cb.layout_sink.v1:";

impl ChainbatchCodec {
    /// Whether `node` is a chainbatch operator this codec encodes.
    pub fn encodes(node: &dyn ExecutionPlan) -> bool {
        (node as &dyn std::any::Any).is::<LayoutSinkExec>()
    }
}

impl PhysicalExtensionCodec for ChainbatchCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(json) = buf.strip_prefix(LAYOUT_SINK_TAG) else {
            return Err(DataFusionError::Internal(
                "unknown chainbatch plan node".into(),
            ));
        };
        let config: LayoutSinkConfig = serde_json::from_slice(json)
            .map_err(|e| DataFusionError::Internal(format!("bad LayoutSinkExec encoding: {e}")))?;
        let [input] = inputs else {
            return Err(DataFusionError::Internal(
                "LayoutSinkExec takes one input".into(),
            ));
        };
        Ok(Arc::new(LayoutSinkExec::new(input.clone(), config)))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(sink) = (node.as_ref() as &dyn std::any::Any).downcast_ref::<LayoutSinkExec>()
        else {
            return Err(DataFusionError::Internal(format!(
                "cannot encode {}",
                node.name()
            )));
        };
        buf.extend_from_slice(LAYOUT_SINK_TAG);
        serde_json::to_writer(buf, sink.config())
            .map_err(|e| DataFusionError::Internal(e.to_string()))
    }

    fn try_decode_udf(&self, name: &str, _buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        crate::udf::all()
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| DataFusionError::Internal(format!("unknown function {name}")))
    }
}
