//! Where the GPU backends (CubeCL: CUDA, wgpu) keep their autotune results.
//!
//! Left alone, CubeCL reads `cubecl.toml`/`burn.toml` from the working directory and every
//! directory above it, and writes its autotune cache into the `target/` beside the nearest
//! `Cargo.toml` it finds above — a directory that may belong to someone else. `pipe` pins
//! CubeCL's configuration once, before the first GPU device is made: its defaults, the
//! `CUBECL_*` environment variables (the user's deliberate choice), and the autotune cache under
//! the user's cache directory (`$XDG_CACHE_HOME/pipe/cubecl`, else `~/.cache/pipe/cubecl`, else
//! the system temporary directory).

use std::path::PathBuf;
use std::sync::Once;

use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};

/// The directory CubeCL's autotune cache is written under.
pub fn kernel_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("pipe").join("cubecl")
}

/// Pin CubeCL's configuration (once per process; later calls do nothing). If something else
/// in the process already read or set it, that configuration stands.
pub(crate) fn pin_cubecl_config() {
    static PINNED: Once = Once::new();
    PINNED.call_once(|| {
        let mut storage = CubeClRuntimeConfig::storage().lock();
        if storage.is_some() {
            tracing::debug!("CubeCL configuration already set; leaving it");
            return;
        }
        let mut config = CubeClRuntimeConfig::default().override_from_env();
        let dir = kernel_cache_dir();
        tracing::debug!(dir = %dir.display(), "CubeCL autotune cache");
        config.autotune.cache = CacheConfig::File(dir);
        *storage = Some(std::sync::Arc::new(config));
    });
}
