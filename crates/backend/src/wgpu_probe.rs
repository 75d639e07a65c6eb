//! Which wgpu adapters this machine has, asked of wgpu itself: Burn (cubecl-wgpu) panics when
//! asked for a device type that is not present, so the choice is made here, before Burn sees it.

use std::fmt;

use burn::backend::wgpu::WgpuDevice;
use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};

/// What kind of adapter it is, in the order [`best_adapter`] prefers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WgpuKind {
    Discrete,
    Integrated,
    Virtual,
    /// A software rasteriser (Mesa's lavapipe, "llvmpipe").
    Cpu,
}

impl WgpuKind {
    /// A real GPU, which `auto` may pick (a software adapter only when asked for by name).
    pub fn is_hardware(self) -> bool {
        !matches!(self, WgpuKind::Cpu)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            WgpuKind::Discrete => "discrete",
            WgpuKind::Integrated => "integrated",
            WgpuKind::Virtual => "virtual",
            WgpuKind::Cpu => "cpu",
        }
    }
}

/// One adapter: its kind, its position among adapters of that kind, and its driver's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgpuAdapter {
    pub kind: WgpuKind,
    pub index: usize,
    pub name: String,
}

impl WgpuAdapter {
    /// The Burn device that selects this adapter.
    pub fn device(&self) -> WgpuDevice {
        match self.kind {
            WgpuKind::Discrete => WgpuDevice::DiscreteGpu(self.index),
            WgpuKind::Integrated => WgpuDevice::IntegratedGpu(self.index),
            WgpuKind::Virtual => WgpuDevice::VirtualGpu(self.index),
            WgpuKind::Cpu => WgpuDevice::Cpu,
        }
    }
}

impl fmt::Display for WgpuAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} ({})", self.kind.name(), self.index, self.name)
    }
}

/// Every adapter of the platform's graphics API (Vulkan on Linux, Metal on macOS), in the
/// order wgpu lists them; adapters of type "other" are left out, as Burn leaves them out.
pub fn adapters() -> Vec<WgpuAdapter> {
    let backends = wgpu::Backends::from(AutoGraphicsApi::backend());
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let mut seen: Vec<WgpuKind> = Vec::new();
    futures_lite::future::block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .filter_map(|adapter| {
            let info = adapter.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => WgpuKind::Discrete,
                wgpu::DeviceType::IntegratedGpu => WgpuKind::Integrated,
                wgpu::DeviceType::VirtualGpu => WgpuKind::Virtual,
                wgpu::DeviceType::Cpu => WgpuKind::Cpu,
                wgpu::DeviceType::Other => return None,
            };
            let index = seen.iter().filter(|&&k| k == kind).count();
            seen.push(kind);
            Some(WgpuAdapter {
                kind,
                index,
                name: info.name,
            })
        })
        // Burn selects a software adapter by kind alone (`WgpuDevice::Cpu`): the first one.
        .filter(|a| a.kind != WgpuKind::Cpu || a.index == 0)
        .collect()
}

/// The adapter a `backend = "wgpu"` run uses: discrete, then integrated, virtual, software.
pub fn best_adapter() -> Option<WgpuAdapter> {
    let found = adapters();
    tracing::debug!(?found, "wgpu adapters");
    found.into_iter().min_by_key(|a| (a.kind, a.index))
}
