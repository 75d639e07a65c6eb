//! Random initialisation for training from scratch, as transformers' `_init_weights` for BLIP:
//! weights and embeddings ~ N(0, initializer_range), biases 0, LayerNorm 1/0. Seeded and
//! independent of the backend (values are drawn on the host).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use pipe_blip::Blip;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// A copy of `model` with every parameter drawn anew.
pub fn random_init<B: Backend>(model: Blip<B>, std: f64, seed: u64) -> Blip<B> {
    let mut m = Init {
        path: Vec::new(),
        rng: StdRng::seed_from_u64(seed),
        std: std as f32,
    };
    model.map(&mut m)
}

struct Init {
    path: Vec<String>,
    rng: StdRng,
    std: f32,
}

impl Init {
    fn normal(&mut self) -> f32 {
        // Box–Muller.
        let u1: f32 = self.rng.random_range(f32::EPSILON..1.0);
        let u2: f32 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos() * self.std
    }
}

impl<B: Backend> ModuleMapper<B> for Init {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let shape = param.lazy_shape();
        let device = param.lazy_device();
        let n = shape.num_elements();
        let name = self.path.last().map(String::as_str).unwrap_or("");
        let values: Vec<f32> = match name {
            "gamma" => vec![1.0; n],
            "beta" | "bias" => vec![0.0; n],
            _ => (0..n).map(|_| self.normal()).collect(),
        };
        let id = param.id;
        // Trainable, as the parameters of `Blip::new` are (freezing is `Module::no_grad`).
        let t = Tensor::<B, D>::from_data(TensorData::new(values, shape), &device).require_grad();
        Param::initialized(id, t)
    }
}
