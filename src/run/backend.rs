//! Choosing the compute backend at run time: burn's wgpu backend on a hardware adapter, otherwise
//! the fastest CPU backend (flex), saying which and why.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, DeviceKind};
use serde::{Deserialize, Serialize};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// wgpu on a hardware adapter, else flex.
    #[default]
    Auto,
    /// wgpu on whatever adapter exists (a software rasteriser such as lavapipe included).
    Wgpu,
    /// burn's flex CPU backend.
    Flex,
    /// burn's ndarray CPU backend (deprecated upstream; kept for comparison).
    Ndarray,
}

impl BackendChoice {
    pub const ALL: [BackendChoice; 4] = [
        BackendChoice::Auto,
        BackendChoice::Wgpu,
        BackendChoice::Flex,
        BackendChoice::Ndarray,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Wgpu => "wgpu",
            BackendChoice::Flex => "flex",
            BackendChoice::Ndarray => "ndarray",
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backend `{s}` (auto, wgpu, flex or ndarray)"))
    }
}

/// The adapter wgpu would use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    pub name: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// The graphics API (Vulkan, Metal, Dx12, Gl).
    pub api: String,
}

impl From<wgpu::AdapterInfo> for AdapterInfo {
    fn from(info: wgpu::AdapterInfo) -> Self {
        AdapterInfo {
            name: info.name,
            device_type: format!("{:?}", info.device_type),
            api: format!("{:?}", info.backend),
        }
    }
}

impl AdapterInfo {
    /// A CPU rasteriser such as Mesa's lavapipe or llvmpipe.
    pub fn is_software(&self) -> bool {
        self.device_type == "Cpu"
    }
}

/// The backend a run uses, and why.
#[derive(Debug, Clone)]
pub struct Backend {
    pub device: Device,
    /// `wgpu`, `flex` or `ndarray`.
    pub name: &'static str,
    pub adapter: Option<AdapterInfo>,
    /// Why this backend: shown to the user and written to `environment.json`.
    pub reason: String,
}

impl Backend {
    /// True when the run computes on a software rasteriser (a warning for the user).
    pub fn is_software_adapter(&self) -> bool {
        self.adapter.as_ref().is_some_and(AdapterInfo::is_software)
    }

    /// True on wgpu: the only backend with an adapter.
    pub fn is_wgpu(&self) -> bool {
        self.adapter.is_some()
    }

    pub fn adapter_label(&self) -> String {
        match &self.adapter {
            Some(a) => format!("{} ({}, {})", a.name, a.device_type, a.api),
            None => "CPU".into(),
        }
    }
}

/// The adapter wgpu picks with a high-performance preference, if any. Never panics.
pub fn probe_adapter() -> Option<AdapterInfo> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        futures_lite::future::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .ok()?;
    Some(adapter.get_info().into())
}

/// wgpu was asked for and no adapter exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "no wgpu adapter found (no GPU driver; for a software one install mesa-vulkan-drivers), use --backend flex"
)]
pub struct NoAdapter;

/// Resolve a choice to a device. `auto` takes wgpu only on a hardware adapter: without a GPU the
/// flex CPU backend is several times faster than wgpu on a software rasteriser.
pub fn select(choice: BackendChoice) -> Result<Backend, NoAdapter> {
    let flex = |reason: String| Backend {
        device: Device::flex(),
        name: "flex",
        adapter: None,
        reason,
    };
    match choice {
        BackendChoice::Flex => Ok(flex("asked for flex".into())),
        BackendChoice::Ndarray => Ok(Backend {
            #[allow(deprecated)]
            device: Device::ndarray(),
            name: "ndarray",
            adapter: None,
            reason: "asked for ndarray".into(),
        }),
        BackendChoice::Wgpu => match probe_adapter() {
            Some(adapter) => {
                let reason = if adapter.is_software() {
                    format!(
                        "asked for wgpu; warning: {} is a software rasteriser on the CPU, slower than flex",
                        adapter.name
                    )
                } else {
                    "asked for wgpu".into()
                };
                Ok(Backend {
                    device: Device::wgpu(DeviceKind::DefaultDevice),
                    name: "wgpu",
                    adapter: Some(adapter),
                    reason,
                })
            }
            None => Err(NoAdapter),
        },
        BackendChoice::Auto => match probe_adapter() {
            Some(adapter) if !adapter.is_software() => Ok(Backend {
                device: Device::wgpu(DeviceKind::DefaultDevice),
                name: "wgpu",
                reason: format!("auto: hardware adapter {} found", adapter.name),
                adapter: Some(adapter),
            }),
            Some(adapter) => Ok(flex(format!(
                "auto: only the software adapter {} found; flex is faster on the CPU",
                adapter.name
            ))),
            None => Ok(flex(
                "auto: no GPU adapter found; flex is the fastest CPU backend".into(),
            )),
        },
    }
}
