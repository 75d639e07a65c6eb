//! Which Burn backend a run uses: `[pipeline] backend` (Auto/Cpu/Cuda) resolved against what
//! this build can run.
//!
//! The model is generic over `B: Backend`; the choice between backends is made once, at run
//! time, here. Code that wants to run on "whatever was chosen" implements [`OnBackend`] and calls
//! [`ResolvedBackend::run`], which monomorphises it for every backend compiled in.

use std::fmt;

use burn::tensor::backend::Backend;
use pipe_stage_api::BackendChoice;

/// The CPU backend: Burn's `flex`, f32.
pub type CpuBackend = burn::backend::Flex<f32>;
/// The CPU device (there is only one).
pub type CpuDevice = burn::backend::flex::FlexDevice;

/// The CUDA backend (only with `--features cuda`), f32.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda<f32>;
/// A CUDA device by ordinal.
#[cfg(feature = "cuda")]
pub type CudaDevice = burn::backend::cuda::CudaDevice;

/// The backend this build can actually run for the pipeline's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedBackend {
    /// Burn `flex` on the CPU.
    Cpu,
    /// CUDA device `index`.
    #[cfg(feature = "cuda")]
    Cuda { index: usize },
}

/// Why a backend choice cannot be honoured by this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(
        "backend \"cuda\" was requested but this build has no CUDA support; \
         rebuild with `--features cuda` (or set `backend = \"cpu\"`)"
    )]
    CudaNotBuilt,
}

/// Resolve the pipeline's backend choice.
///
/// - `Cpu` → the CPU.
/// - `Cuda` → CUDA device 0, or [`BackendError::CudaNotBuilt`] without the `cuda` feature.
/// - `Auto` → CUDA when the build has it and an NVIDIA driver is present, the CPU otherwise.
pub fn resolve(choice: BackendChoice) -> Result<ResolvedBackend, BackendError> {
    let resolved = match choice {
        BackendChoice::Cpu => ResolvedBackend::Cpu,
        BackendChoice::Cuda => cuda_or_error()?,
        BackendChoice::Auto => auto(),
    };
    tracing::debug!(?choice, backend = %resolved, "resolved backend");
    Ok(resolved)
}

#[cfg(feature = "cuda")]
fn cuda_or_error() -> Result<ResolvedBackend, BackendError> {
    Ok(ResolvedBackend::Cuda { index: 0 })
}

#[cfg(not(feature = "cuda"))]
fn cuda_or_error() -> Result<ResolvedBackend, BackendError> {
    Err(BackendError::CudaNotBuilt)
}

#[cfg(feature = "cuda")]
fn auto() -> ResolvedBackend {
    // The CUDA driver library is loaded lazily by cudarc, which panics when it is absent; probe
    // for the kernel driver instead of touching it, so Auto never aborts on a CPU-only machine.
    if nvidia_driver_present() {
        ResolvedBackend::Cuda { index: 0 }
    } else {
        ResolvedBackend::Cpu
    }
}

#[cfg(not(feature = "cuda"))]
fn auto() -> ResolvedBackend {
    ResolvedBackend::Cpu
}

/// Whether an NVIDIA kernel driver is loaded (Linux: `/proc/driver/nvidia/version`).
#[cfg(feature = "cuda")]
fn nvidia_driver_present() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists()
        || std::path::Path::new("/dev/nvidia0").exists()
}

impl ResolvedBackend {
    /// A human description for logs and manifests: `"cpu (flex)"`, `"cuda:0"`.
    pub fn describe(&self) -> String {
        match self {
            ResolvedBackend::Cpu => "cpu (flex)".to_string(),
            #[cfg(feature = "cuda")]
            ResolvedBackend::Cuda { index } => format!("cuda:{index}"),
        }
    }

    /// Whether this is an accelerator (GPU) backend.
    pub fn is_accelerator(&self) -> bool {
        !matches!(self, ResolvedBackend::Cpu)
    }

    /// Run `job` on this backend: the one place where the runtime choice becomes a type.
    pub fn run<J: OnBackend>(&self, job: J) -> J::Output {
        match self {
            ResolvedBackend::Cpu => job.run::<CpuBackend>(CpuDevice::default()),
            #[cfg(feature = "cuda")]
            ResolvedBackend::Cuda { index } => job.run::<CudaBackend>(CudaDevice::new(*index)),
        }
    }
}

impl fmt::Display for ResolvedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Work generic over the backend, run by [`ResolvedBackend::run`].
pub trait OnBackend {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_cpu() {
        let r = resolve(BackendChoice::Cpu).expect("cpu always resolves");
        assert_eq!(r, ResolvedBackend::Cpu);
        assert_eq!(r.describe(), "cpu (flex)");
        assert!(!r.is_accelerator());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_typed_error() {
        let e = resolve(BackendChoice::Cuda).expect_err("no cuda in this build");
        assert_eq!(e, BackendError::CudaNotBuilt);
        assert!(e.to_string().contains("--features cuda"), "{e}");
        assert_eq!(
            resolve(BackendChoice::Auto).expect("auto resolves"),
            ResolvedBackend::Cpu
        );
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_with_feature_is_device_zero() {
        let r = resolve(BackendChoice::Cuda).expect("cuda is built");
        assert_eq!(r.describe(), "cuda:0");
    }

    #[test]
    fn run_dispatches_generic_work() {
        struct Sum;
        impl OnBackend for Sum {
            type Output = f32;
            fn run<B: Backend>(self, device: B::Device) -> f32 {
                let t = burn::tensor::Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
                t.sum().into_scalar().elem()
            }
        }
        use burn::tensor::ElementConversion;
        assert_eq!(ResolvedBackend::Cpu.run(Sum), 6.0);
    }
}
