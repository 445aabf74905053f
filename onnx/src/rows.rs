//! Row-exact reductions: why a batched answer is bit-identical to the answer
//! the same input gets alone.
//!
//! Batching stacks calls along dimension 0, so a call's rows land at some
//! offset inside one big tensor. tract's SIMD reductions (the sums inside
//! `Softmax` and `Reduce`) split each row into an unaligned head, an aligned
//! body and a tail, and add the three parts in that order
//! (`tract-linalg`'s `frame/element_wise_helper.rs`); where the head ends
//! depends on the row's address. A row at offset 0 of a tensor (a call run
//! alone) and the same row in the middle of a batch are summed in different
//! orders, so their probabilities could differ in the last bits: a probe on
//! `digits.onnx` saw 8–15 of 64 rows change when the batch was rotated by 1
//! to 5 rows, and none when it was rotated by 8 (10 floats a row, so 64-byte
//! alignment repeats every 8 rows).
//!
//! [`make_row_exact`] wraps each such operator of an optimised model in
//! [`RowWise`], which evaluates the operator on one dimension-0 slice at a
//! time, each copied to the start of a freshly aligned tensor. Every row is
//! then reduced at the same alignment whether it ran alone or in a batch of
//! any size, which is what the batching contract promises. Matrix products
//! are left alone: their results do not depend on a row's place (rotation
//! by any count kept their bits in the same probe).
//!
//! The cost is one copy of the reduced tensor per call, and one operator
//! call per row: for a classifier's final softmax over a few classes it is
//! a few hundred nanoseconds per row beside the matrix products.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::nn::{Reduce, Softmax};

/// Alignment of each row's own tensor: a multiple of every tract kernel's
/// alignment (at most one 512-bit vector, 64 bytes, today), so the head of
/// an aligned row is always empty.
const ROW_ALIGNMENT: usize = 128;

/// An operator evaluated one dimension-0 slice at a time, each slice at the
/// start of its own aligned tensor (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RowWise<O> {
    inner: O,
}

/// Operators whose evaluation reduces along some axes, which must not
/// include dimension 0 for [`RowWise`] to evaluate them row by row.
trait Reducing: TypedOp + Clone + Eq + std::hash::Hash {
    /// The axes the operator reduces over.
    fn reduced_axes(&self) -> &[usize];
}

impl Reducing for Softmax {
    fn reduced_axes(&self) -> &[usize] {
        &self.axes
    }
}

impl Reducing for Reduce {
    fn reduced_axes(&self) -> &[usize] {
        &self.axes
    }
}

impl<O: Reducing> Op for RowWise<O> {
    fn name(&self) -> StaticName {
        format!("RowWise<{}>", self.inner.name()).into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.inner.info()
    }

    op_as_typed_op!();
}

impl<O: Reducing> EvalOp for RowWise<O> {
    op_out_of_plan!();

    fn eval(&self, ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape: TVec<usize> = input.shape().into();
        let Some(&rows) = shape.first() else {
            return self.inner.eval(ctx, tvec!(input));
        };
        let mut row_shape = shape.clone();
        row_shape[0] = 1;
        let mut output: Option<Tensor> = None;
        for i in 0..rows {
            let mut row = Tensor::zero_aligned_dt(input.datum_type(), &row_shape, ROW_ALIGNMENT)?;
            row.assign_slice(0..1, &input, i..i + 1, 0)?;
            let answer = args_1!(self.inner.eval(ctx, tvec!(row.into_tvalue()))?);
            let out = match &mut output {
                Some(out) => out,
                None => {
                    let mut out_shape: TVec<usize> = answer.shape().into();
                    ensure!(
                        out_shape.first() == Some(&1),
                        "{} changed dimension 0 of a row",
                        self.name()
                    );
                    out_shape[0] = rows;
                    output.insert(Tensor::zero_dt(answer.datum_type(), &out_shape)?)
                }
            };
            out.assign_slice(i..i + 1, &answer, 0..1, 0)?;
        }
        match output {
            Some(out) => Ok(tvec!(out.into_tvalue())),
            // No rows: nothing is reduced, so the order cannot matter.
            None => self.inner.eval(ctx, tvec!(input)),
        }
    }
}

impl<O: Reducing> TypedOp for RowWise<O> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.inner.output_facts(inputs)
    }

    as_op!();
}

/// Wraps every `Softmax` and `Reduce` of `model` that reduces within rows
/// (not along dimension 0) in [`RowWise`], returning how many it wrapped.
/// Run it on the optimised model: the optimiser does not know [`RowWise`].
pub(crate) fn make_row_exact(model: &mut TypedModel) -> usize {
    fn wrap<O: Reducing>(op: &O) -> Option<Box<dyn TypedOp>> {
        (!op.reduced_axes().contains(&0))
            .then(|| Box::new(RowWise { inner: op.clone() }) as Box<dyn TypedOp>)
    }
    let mut wrapped = 0;
    for node in model.nodes_mut() {
        let replacement = if let Some(op) = node.op_as::<Softmax>() {
            wrap(op)
        } else if let Some(op) = node.op_as::<Reduce>() {
            wrap(op)
        } else {
            None
        };
        if let Some(op) = replacement {
            node.op = op;
            wrapped += 1;
        }
    }
    wrapped
}
