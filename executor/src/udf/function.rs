//! A scalar function defined by its name, argument check and kernel, so each
//! blockchain function is its kernel and nothing else.

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::fmt;
use std::sync::Arc;

type ReturnFn = fn(&[DataType]) -> Result<DataType>;
type KernelFn = fn(&[ArrayRef], usize) -> Result<ArrayRef>;

/// A scalar function made of a name, a signature, a return-type rule and an
/// array kernel; equal by name.
pub struct RowFunction {
    name: &'static str,
    signature: Signature,
    return_type: ReturnFn,
    kernel: KernelFn,
}

impl RowFunction {
    /// Builds the DataFusion function from its parts; `kernel` gets the
    /// arguments as arrays and the number of rows.
    pub fn udf(
        name: &'static str,
        signature: Signature,
        return_type: ReturnFn,
        kernel: KernelFn,
    ) -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(Self {
            name,
            signature,
            return_type,
            kernel,
        }))
    }

    /// A signature of `n` arguments of any type, which the kernel casts or refuses.
    pub fn any_args(n: usize) -> Signature {
        Signature::any(n, Volatility::Immutable)
    }
}

impl fmt::Debug for RowFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for RowFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RowFunction {}

impl std::hash::Hash for RowFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for RowFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        (self.return_type)(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        (self.kernel)(&arrays, args.number_rows).map(ColumnarValue::Array)
    }
}

/// Applies `f` to every non-null value of a string-like column, giving an
/// array of `A`; NULL stays NULL.
pub fn map_strings<A, T>(array: &ArrayRef, f: impl Fn(&str) -> Option<T>) -> Result<ArrayRef>
where
    A: FromIterator<Option<T>> + arrow::array::Array + 'static,
{
    let strings = arrow::compute::cast(array, &DataType::Utf8)?;
    let out: A = arrow::array::AsArray::as_string::<i32>(&strings)
        .iter()
        .map(|v| v.and_then(&f))
        .collect();
    Ok(Arc::new(out))
}
