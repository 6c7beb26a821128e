//! Each parameter's drift: the exponential average of its optimizer update per unit of learning
//! rate over Full steps, which Predict and Correct steps move it by.

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

/// Moves every parameter by `drift · scale(group)`, keeping it a trainable leaf.
pub(super) struct ApplyDrift<'a> {
    pub drift: &'a GradientsParams,
    pub scale: &'a dyn Fn(ParamId) -> f64,
    pub squared_norm: f64,
}

impl<B: AutodiffBackend> ModuleMapper<B> for ApplyDrift<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let scale = (self.scale)(id);
        let tensor = match self.drift.get::<B::InnerBackend, D>(id) {
            Some(drift) if scale != 0.0 => {
                let change = drift.mul_scalar(scale);
                self.squared_norm += change.clone().square().sum().into_scalar().elem::<f64>();
                let moved = Tensor::from_inner(tensor.inner() + change);
                moved.require_grad()
            }
            _ => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Folds `(after - before) / lr` into the drift average of every parameter.
pub(super) struct RecordUpdate<'a, B: AutodiffBackend> {
    pub before: GradientsParams,
    pub drift: &'a mut GradientsParams,
    pub inv_lr: f64,
    pub keep: f64,
    pub _b: std::marker::PhantomData<B>,
}

/// Every parameter's value, by id.
pub(super) struct Snapshot<B: AutodiffBackend>(pub GradientsParams, pub std::marker::PhantomData<B>);

impl<B: AutodiffBackend> ModuleVisitor<B> for Snapshot<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.register::<B::InnerBackend, D>(param.id, param.val().inner());
    }
}

impl<B: AutodiffBackend> ModuleVisitor<B> for RecordUpdate<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(before) = self.before.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        let update = (param.val().inner() - before).mul_scalar(self.inv_lr);
        let drift = match self.drift.remove::<B::InnerBackend, D>(param.id) {
            Some(old) => old.mul_scalar(self.keep) + update.mul_scalar(1.0 - self.keep),
            None => update,
        };
        self.drift.register(param.id, drift);
    }
}
