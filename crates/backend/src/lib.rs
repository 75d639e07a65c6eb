//! Which Burn backend a run uses: `[pipeline] backend` (Auto/Cpu/Cuda/Wgpu) resolved against
//! what this build can run and what this machine has.
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

/// Burn's wgpu backend (only with `--features wgpu`), f32: Vulkan on Linux, Metal on macOS.
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu<f32>;

#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod kernel_cache;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub use kernel_cache::kernel_cache_dir;
#[cfg(feature = "wgpu")]
mod wgpu_probe;
#[cfg(feature = "wgpu")]
pub use wgpu_probe::{WgpuAdapter, WgpuKind, adapters as wgpu_adapters};

/// The backend this build can actually run for the pipeline's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedBackend {
    /// Burn `flex` on the CPU.
    Cpu,
    /// CUDA device `index`.
    #[cfg(feature = "cuda")]
    Cuda { index: usize },
    /// A wgpu adapter.
    #[cfg(feature = "wgpu")]
    Wgpu(WgpuAdapter),
}

/// Why a backend choice cannot be honoured by this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(
        "backend \"cuda\" was requested but this build has no CUDA support; \
         rebuild with `--features cuda` (or set `backend = \"cpu\"`)"
    )]
    CudaNotBuilt,
    #[error(
        "backend \"wgpu\" was requested but this build has no wgpu support; \
         rebuild with `--features wgpu` (or set `backend = \"cpu\"`)"
    )]
    WgpuNotBuilt,
    #[error(
        "backend \"wgpu\" was requested but no Vulkan or Metal adapter was found \
         (on Debian, `apt-get install mesa-vulkan-drivers` gives the software one, lavapipe)"
    )]
    NoWgpuAdapter,
}

/// Resolve the pipeline's backend choice.
///
/// - `Cpu` → the CPU.
/// - `Cuda` → CUDA device 0, or [`BackendError::CudaNotBuilt`] without the `cuda` feature.
/// - `Wgpu` → the best wgpu adapter (discrete, integrated, virtual, then software), or a typed
///   error when the build has no `wgpu` feature or the machine no adapter.
/// - `Auto` → CUDA when the build has it and an NVIDIA driver is present, else a wgpu adapter
///   that is a real GPU (never a software one), else the CPU.
pub fn resolve(choice: BackendChoice) -> Result<ResolvedBackend, BackendError> {
    resolve_on(choice, None)
}

/// [`resolve`] on the backend's device `device` (a CUDA ordinal, or the position among the
/// chosen kind of wgpu adapter); `None` is the first. The CPU has one device.
pub fn resolve_on(
    choice: BackendChoice,
    device: Option<usize>,
) -> Result<ResolvedBackend, BackendError> {
    let resolved = match choice {
        BackendChoice::Cpu => ResolvedBackend::Cpu,
        BackendChoice::Cuda => cuda_or_error(device)?,
        BackendChoice::Wgpu => wgpu_or_error(device)?,
        BackendChoice::Auto => auto(device),
    };
    tracing::debug!(?choice, backend = %resolved, "resolved backend");
    Ok(resolved)
}

/// How many devices an accelerator stage could be given for `choice` (0 on the CPU): the
/// default device pool. CUDA devices are counted from the driver's device files (or
/// `CUDA_VISIBLE_DEVICES`), without loading the CUDA library.
pub fn device_count(choice: BackendChoice) -> usize {
    match choice {
        BackendChoice::Cpu => 0,
        BackendChoice::Cuda => cuda_count(),
        BackendChoice::Wgpu => wgpu_count(false),
        BackendChoice::Auto => match cuda_count() {
            0 => wgpu_count(true),
            n => n,
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda_count() -> usize {
    if !nvidia_driver_present() {
        return 0;
    }
    if let Ok(visible) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return visible.split(',').filter(|d| !d.trim().is_empty()).count();
    }
    std::fs::read_dir("/dev").map_or(0, |dir| {
        dir.flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix("nvidia")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .count()
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_count() -> usize {
    0
}

#[cfg(feature = "wgpu")]
fn wgpu_count(hardware_only: bool) -> usize {
    let Some(best) = wgpu_probe::best_adapter() else {
        return 0;
    };
    if hardware_only && !best.kind.is_hardware() {
        return 0;
    }
    wgpu_probe::adapters()
        .iter()
        .filter(|a| a.kind == best.kind)
        .count()
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_count(_hardware_only: bool) -> usize {
    0
}

#[cfg(feature = "cuda")]
fn cuda_or_error(device: Option<usize>) -> Result<ResolvedBackend, BackendError> {
    Ok(ResolvedBackend::Cuda {
        index: device.unwrap_or(0),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_or_error(_device: Option<usize>) -> Result<ResolvedBackend, BackendError> {
    Err(BackendError::CudaNotBuilt)
}

#[cfg(feature = "wgpu")]
fn wgpu_or_error(device: Option<usize>) -> Result<ResolvedBackend, BackendError> {
    wgpu_probe::best_adapter()
        .map(|best| wgpu_at(best, device))
        .map(ResolvedBackend::Wgpu)
        .ok_or(BackendError::NoWgpuAdapter)
}

/// The adapter of `best`'s kind at `device` (`best` itself when there is no such one).
#[cfg(feature = "wgpu")]
fn wgpu_at(best: WgpuAdapter, device: Option<usize>) -> WgpuAdapter {
    let Some(index) = device else { return best };
    wgpu_probe::adapters()
        .into_iter()
        .find(|a| a.kind == best.kind && a.index == index)
        .unwrap_or(best)
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_or_error(_device: Option<usize>) -> Result<ResolvedBackend, BackendError> {
    Err(BackendError::WgpuNotBuilt)
}

fn auto(device: Option<usize>) -> ResolvedBackend {
    // The CUDA driver library is loaded lazily by cudarc, which panics when it is absent; probe
    // for the kernel driver instead of touching it, so Auto never aborts on a CPU-only machine.
    #[cfg(feature = "cuda")]
    if nvidia_driver_present() {
        return ResolvedBackend::Cuda {
            index: device.unwrap_or(0),
        };
    }
    #[cfg(feature = "wgpu")]
    if let Some(adapter) = wgpu_probe::best_adapter().filter(|a| a.kind.is_hardware()) {
        return ResolvedBackend::Wgpu(wgpu_at(adapter, device));
    }
    let _ = device;
    ResolvedBackend::Cpu
}

/// Whether an NVIDIA kernel driver is loaded (Linux: `/proc/driver/nvidia/version`).
#[cfg(feature = "cuda")]
fn nvidia_driver_present() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists()
        || std::path::Path::new("/dev/nvidia0").exists()
}

impl ResolvedBackend {
    /// A human description for logs and manifests: `"cpu (flex)"`, `"cuda:0"`,
    /// `"wgpu:cpu:0 (llvmpipe …)"`.
    pub fn describe(&self) -> String {
        match self {
            ResolvedBackend::Cpu => "cpu (flex)".to_string(),
            #[cfg(feature = "cuda")]
            ResolvedBackend::Cuda { index } => format!("cuda:{index}"),
            #[cfg(feature = "wgpu")]
            ResolvedBackend::Wgpu(adapter) => format!("wgpu:{adapter}"),
        }
    }

    /// What a cache key records of the backend: what changes results (the kind of backend,
    /// the adapter's model), not which of a machine's devices ran it, so a key computed on
    /// `cuda:1` or on another machine is the key computed on `cuda:0`.
    pub fn key(&self) -> String {
        match self {
            ResolvedBackend::Cpu => "cpu (flex)".to_string(),
            #[cfg(feature = "cuda")]
            ResolvedBackend::Cuda { .. } => "cuda".to_string(),
            #[cfg(feature = "wgpu")]
            ResolvedBackend::Wgpu(adapter) => {
                format!("wgpu:{} ({})", adapter.kind.name(), adapter.name)
            }
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
            ResolvedBackend::Cuda { index } => {
                kernel_cache::pin_cubecl_config();
                job.run::<CudaBackend>(CudaDevice::new(*index))
            }
            #[cfg(feature = "wgpu")]
            ResolvedBackend::Wgpu(adapter) => {
                kernel_cache::pin_cubecl_config();
                job.run::<WgpuBackend>(adapter.device())
            }
        }
    }
}

impl ResolvedBackend {
    /// Run `job` with `peers` devices of this backend: peer i on `ordinals[i]` (the device
    /// pool's), wrapping around when there are fewer ordinals than peers; with none, every peer
    /// on this backend's own device. The CPU has one device: every peer shares it.
    pub fn run_on<J: OnDevices>(&self, ordinals: &[usize], peers: usize, job: J) -> J::Output {
        let peers = peers.max(1);
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        let at = |i: usize| ordinals.get(i % ordinals.len().max(1)).copied();
        #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
        let _ = ordinals;
        match self {
            ResolvedBackend::Cpu => job.run::<CpuBackend>(vec![CpuDevice::default(); peers]),
            #[cfg(feature = "cuda")]
            ResolvedBackend::Cuda { index } => {
                kernel_cache::pin_cubecl_config();
                let devices = (0..peers)
                    .map(|i| CudaDevice::new(at(i).unwrap_or(*index)))
                    .collect();
                job.run::<CudaBackend>(devices)
            }
            #[cfg(feature = "wgpu")]
            ResolvedBackend::Wgpu(adapter) => {
                kernel_cache::pin_cubecl_config();
                let devices = (0..peers)
                    .map(|i| match at(i) {
                        Some(k) => wgpu_at(adapter.clone(), Some(k)).device(),
                        None => adapter.device(),
                    })
                    .collect();
                job.run::<WgpuBackend>(devices)
            }
        }
    }
}

/// Work on several devices of one backend (data-parallel peers), run by
/// [`ResolvedBackend::run_on`].
pub trait OnDevices {
    type Output;
    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output;
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
        assert_eq!(
            r.key(),
            "cpu (flex)",
            "CPU keys are those of earlier versions"
        );
        assert!(!r.is_accelerator());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_typed_error() {
        let e = resolve(BackendChoice::Cuda).expect_err("no cuda in this build");
        assert_eq!(e, BackendError::CudaNotBuilt);
        assert!(e.to_string().contains("--features cuda"), "{e}");
    }

    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    #[test]
    fn auto_without_accelerators_is_the_cpu() {
        assert_eq!(
            resolve(BackendChoice::Auto).expect("auto resolves"),
            ResolvedBackend::Cpu
        );
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn wgpu_without_feature_is_a_typed_error() {
        let e = resolve(BackendChoice::Wgpu).expect_err("no wgpu in this build");
        assert_eq!(e, BackendError::WgpuNotBuilt);
        assert!(e.to_string().contains("--features wgpu"), "{e}");
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_with_feature_is_device_zero() {
        let r = resolve(BackendChoice::Cuda).expect("cuda is built");
        assert_eq!(r.describe(), "cuda:0");
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn a_cuda_key_names_no_device_ordinal() {
        assert_eq!(ResolvedBackend::Cuda { index: 0 }.key(), "cuda");
        assert_eq!(ResolvedBackend::Cuda { index: 3 }.key(), "cuda");
    }

    /// On a machine with a Vulkan (or Metal) adapter, lavapipe included: CI installs
    /// `mesa-vulkan-drivers`, so this fails there rather than skip when none is found.
    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_resolves_to_an_adapter_and_runs_generic_work() {
        let r = resolve(BackendChoice::Wgpu).expect("a wgpu adapter (mesa-vulkan-drivers?)");
        assert!(r.describe().starts_with("wgpu:"), "{r}");
        let ResolvedBackend::Wgpu(adapter) = &r else {
            panic!("{r}")
        };
        assert!(
            !r.key().contains(&format!(":{}", adapter.index)),
            "{}",
            r.key()
        );
        assert!(r.is_accelerator());
        assert_eq!(r.run(Sum), 6.0);
        // Running pinned CubeCL's configuration: its autotune cache is ours, not a `target/`
        // found above the working directory.
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
        match &CubeClRuntimeConfig::get().autotune.cache {
            CacheConfig::File(dir) => assert_eq!(dir, &kernel_cache_dir()),
            other => panic!("autotune cache not pinned: {other:?}"),
        }
        let auto = resolve(BackendChoice::Auto).expect("auto resolves");
        if let ResolvedBackend::Wgpu(a) = &auto {
            assert!(a.kind.is_hardware(), "auto picked a software adapter: {a}");
        }
    }

    struct Sum;
    impl OnBackend for Sum {
        type Output = f32;
        fn run<B: Backend>(self, device: B::Device) -> f32 {
            use burn::tensor::ElementConversion;
            let t = burn::tensor::Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
            t.sum().into_scalar().elem()
        }
    }

    #[test]
    fn run_dispatches_generic_work() {
        assert_eq!(ResolvedBackend::Cpu.run(Sum), 6.0);
    }
}
