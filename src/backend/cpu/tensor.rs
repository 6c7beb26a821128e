//! Tensor ↔ slice glue for the CPU kernels: the f32 storage of a burn-ndarray tensor as a slice
//! or strided operand, and a `Vec` as a tensor without a copy.

use burn::backend::ndarray::NdArrayTensor;
use burn::tensor::ops::FloatTensor;
use burn::tensor::Tensor;

use crate::backend::{float, Cpu};

/// A 2-D operand: its data pointer with row and column strides in elements (the storage it
/// points into is kept alive by the caller).
#[derive(Clone, Copy)]
pub(crate) struct Operand {
    pub ptr: *const f32,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: isize,
    pub col_stride: isize,
}

/// Runs `f` on the f32 storage of a CPU tensor, whatever its strides.
pub(crate) fn with_operand<R>(t: Tensor<Cpu, 2>, f: impl FnOnce(Operand) -> R) -> R {
    let NdArrayTensor::F32(storage) = t.into_primitive().tensor() else {
        panic!("the CPU backend's float tensors are f32")
    };
    let view = storage.view();
    let (shape, strides) = (view.shape(), view.strides());
    f(Operand { ptr: view.as_ptr(), rows: shape[0], cols: shape[1], row_stride: strides[0], col_stride: strides[1] })
}

/// A row-major `[rows, cols]` CPU tensor that owns `data` (no copy).
pub(crate) fn cpu_tensor(data: Vec<f32>, rows: usize, cols: usize) -> Tensor<Cpu, 2> {
    let array = ndarray::Array::from_shape_vec(ndarray::IxDyn(&[rows, cols]), data).expect("data length = rows × cols");
    float(NdArrayTensor::from(array.into_shared()))
}

impl Operand {
    pub fn transposed(self) -> Self {
        Self { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// The elements as one row-major slice, if that is how they are laid out.
    pub fn row_major<'a>(&self) -> Option<&'a [f32]> {
        let dense =
            (self.col_stride == 1 || self.cols <= 1) && (self.row_stride == self.cols as isize || self.rows <= 1);
        // SAFETY: a dense row-major view of rows × cols elements; used while its storage lives.
        dense.then(|| unsafe { std::slice::from_raw_parts(self.ptr, self.rows * self.cols) })
    }

    pub fn at(&self, r: usize, c: usize) -> f32 {
        // SAFETY: in bounds of the view, whose storage the caller keeps alive.
        unsafe { *self.ptr.offset(r as isize * self.row_stride + c as isize * self.col_stride) }
    }
}

/// Runs `f` on the row-major elements of a CPU tensor `[rows, cols]` (copied only if the tensor
/// is laid out differently).
pub(crate) fn with_rows<R>(t: Tensor<Cpu, 2>, f: impl FnOnce(&[f32]) -> R) -> R {
    with_operand(t, |a| match a.row_major() {
        Some(rows) => f(rows),
        None => f(&(0..a.rows).flat_map(|r| (0..a.cols).map(move |c| a.at(r, c))).collect::<Vec<_>>()),
    })
}

/// The elements of a 1-D CPU tensor.
pub(crate) fn vector(t: Tensor<Cpu, 1>) -> Vec<f32> {
    let n = t.dims()[0];
    with_rows(reshape(t, [1, n]), |v| v.to_vec())
}

/// The primitive under a new shape: no copy when it is contiguous.
pub(crate) fn reshape_primitive(t: FloatTensor<Cpu>, dims: &[usize]) -> FloatTensor<Cpu> {
    let NdArrayTensor::F32(storage) = t else { panic!("the CPU backend's float tensors are f32") };
    let array = storage.into_shared();
    let array = if array.is_standard_layout() { array } else { array.as_standard_layout().into_owned().into_shared() };
    let array = array.into_shape_with_order(ndarray::IxDyn(dims)).expect("reshape keeps the number of elements");
    NdArrayTensor::from(array)
}

/// `t` under the shape `dims`: no copy when it is contiguous.
pub(crate) fn reshape<const D1: usize, const D2: usize>(t: Tensor<Cpu, D1>, dims: [usize; D2]) -> Tensor<Cpu, D2> {
    float(reshape_primitive(t.into_primitive().tensor(), &dims))
}

/// The elements of a CPU tensor as a uniquely owned row-major array: no copy when the tensor
/// already is one.
pub(crate) fn into_unique_rows(t: FloatTensor<Cpu>) -> ndarray::ArcArray<f32, ndarray::IxDyn> {
    let NdArrayTensor::F32(storage) = t else { panic!("the CPU backend's float tensors are f32") };
    let mut array = storage.into_owned();
    if !array.is_standard_layout() {
        array = array.as_standard_layout().into_owned().into_shared();
    }
    array
}

/// A mutable pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub *mut f32);
// SAFETY: every task writes only its own elements (each user says which).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer `offset` elements on. A method, so that closures capture the `Sync` wrapper
    /// rather than (by edition 2021's disjoint capture) the bare pointer inside it.
    ///
    /// # Safety
    /// `offset` is within the allocation.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}
