//! The run folder: `config.toml`, `environment.json`, `metrics.jsonl` (appended and flushed),
//! `summary.json` (written atomically), `checkpoints/*.bpk` with their SHA-256 in
//! `checkpoints/checksums.json`, and a denoiser's sample grids
//! `samples/<phase>-<domain>-<step>.png`.
//!
//! `metrics.jsonl` holds one metric point per line and, where something turned NaN or
//! infinite, an event line `{"event": "divergence", "phase": …, "step": …, "quantity": …,
//! "value": "NaN"}` (readers of metric points skip it).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::data::preview::sample_grid;
use crate::sophon::protect::{self, Checkpoint, Progress};
use crate::sophon::summary::Summary;
use crate::sophon::task::{SampleGrid, SaveModel};
use crate::sophon::{Divergence, ResumeFrom, StoreError, series};

/// `checkpoints/sophon-state.json`: the last complete SOPHON checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SophonState {
    /// The folder under `checkpoints/` holding model.bpk, fts-optim.bpk and ntr-optim.bpk
    /// (and selected.bpk with model selection).
    dir: String,
    progress: Progress,
}

/// One point of a metric series, as a line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub series: String,
    pub step: usize,
    pub value: f64,
}

/// An event line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventLine {
    Divergence(Divergence),
}

/// What ran where: `environment.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub crate_version: String,
    pub backend: String,
    pub adapter: Option<String>,
    pub adapter_type: Option<String>,
    pub software_adapter: bool,
    pub backend_reason: String,
    pub os: String,
    pub threads: usize,
    /// What decides the arithmetic on the CPU (see [`Cpu`]). Two machines with the same
    /// `cpu.features` and `cpu.compute_threads` run the same kernels in the same order.
    #[serde(default)]
    pub cpu: Cpu,
    /// On wgpu: whether the convolution blocks ran as the fused CubeCL kernels (`false`:
    /// burn's own operations, `SOPHON_WGPU_FUSED=0`). Absent on the CPU backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wgpu_fused_blocks: Option<bool>,
}

/// The CPU facts that decide the arithmetic: the matrix-product kernels (the `gemm` crate's, used
/// by the fused convolution block, and burn's flex backend) are picked at run time from the
/// instruction-set features, and the parallel reductions split their work by the thread count,
/// so a different CPU model or thread count can change results in the last digits — and, over
/// thousands of steps, a seed's verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub arch: String,
    /// `model name` of /proc/cpuinfo (empty where unknown).
    pub model: String,
    /// The SIMD features present that the kernels choose between.
    pub features: Vec<String>,
    /// Threads of the compute pool (rayon; `RAYON_NUM_THREADS` sets it).
    pub compute_threads: usize,
    /// The operating system kernel's release (Linux: /proc/sys/kernel/osrelease).
    pub os_release: String,
    /// The matrix-product kernels gemm runs here (see [`matmul_kernels`]).
    #[serde(default)]
    pub matmul_kernels: String,
}

/// The matrix-product kernels the `gemm` crate picks on this CPU, by the same test it makes:
/// `avx512f` where the CPU has AVX-512F and this binary was built with the `avx512` feature (the
/// default), else `avx2+fma` (x86-64 with FMA), `neon` (aarch64), or `scalar`.
pub fn matmul_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return "neon";
        }
    }
    "scalar"
}

/// One line for `bench` and the logs: the CPU, its kernels, and whether AVX-512 kernels are
/// built in.
pub fn kernels_line() -> String {
    let cpu = Cpu::detect();
    let built = if cfg!(feature = "avx512") {
        "AVX-512 kernels built in"
    } else {
        "built without AVX-512 kernels (--no-default-features)"
    };
    format!(
        "CPU {} ({} compute threads): matrix products on {} kernels; {built}",
        if cpu.model.is_empty() {
            &cpu.arch
        } else {
            &cpu.model
        },
        cpu.compute_threads,
        cpu.matmul_kernels
    )
}

impl Cpu {
    /// This machine's.
    pub fn detect() -> Self {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let model = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Self {
            arch: std::env::consts::ARCH.into(),
            model,
            features: simd_features(),
            compute_threads: rayon::current_num_threads(),
            os_release: read("/proc/sys/kernel/osrelease").trim().to_string(),
            matmul_kernels: matmul_kernels().into(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn simd_features() -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! check {
        ($($f:tt),*) => {$(
            if std::arch::is_x86_feature_detected!($f) {
                out.push($f.to_string());
            }
        )*};
    }
    check!(
        "sse4.1", "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
        "avx512dq"
    );
    out
}

#[cfg(target_arch = "aarch64")]
fn simd_features() -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! check {
        ($($f:tt),*) => {$(
            if std::arch::is_aarch64_feature_detected!($f) {
                out.push($f.to_string());
            }
        )*};
    }
    check!("neon", "fp16", "sve");
    out
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_features() -> Vec<String> {
    Vec::new()
}

/// Write `bytes` to `path` via a temporary sibling and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp~");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// An open run folder.
#[derive(Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
    metrics: File,
}

impl RunFolder {
    /// A new folder `base/<name>-<UTC date-time>` (with a suffix if that exists).
    pub fn create_in(base: &Path, name: &str) -> io::Result<Self> {
        let stamp = utc_stamp(SystemTime::now());
        let mut dir = base.join(format!("{name}-{stamp}"));
        let mut n = 1;
        while dir.exists() {
            n += 1;
            dir = base.join(format!("{name}-{stamp}-{n}"));
        }
        Self::create_at(&dir)
    }

    /// Use `dir` as the run folder. Refuses a folder that already holds a run, so nothing
    /// written before is lost; one that a killed run left with nothing in it (an empty
    /// `metrics.jsonl`, no `config.toml`) is used again.
    pub fn create_at(dir: &Path) -> io::Result<Self> {
        let metrics = fs::metadata(dir.join("metrics.jsonl")).map_or(0, |m| m.len());
        if metrics > 0 || dir.join("summary.json").exists() || dir.join("config.toml").exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} already holds a run; choose another --out",
                    dir.display()
                ),
            ));
        }
        let with_path = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("{}: cannot create the run folder: {e}", dir.display()),
            )
        };
        fs::create_dir_all(dir.join("checkpoints")).map_err(with_path)?;
        let metrics = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("metrics.jsonl"))
            .map_err(with_path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics,
        })
    }

    /// Reopen a run folder to resume it. Metric points the resumed run will produce again (SOPHON
    /// points after the last checkpoint, and the attack evaluation) are dropped from
    /// `metrics.jsonl` first, so the file reads as one uninterrupted run.
    pub fn reopen(dir: &Path) -> io::Result<Self> {
        if !dir.join("config.toml").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a run folder (no config.toml)", dir.display()),
            ));
        }
        let done = read_state(dir)?.map_or(0, |s| s.progress.iteration);
        // Without a pre-trained checkpoint the resumed run starts over, pre-training included.
        let pretrained = dir.join("checkpoints").join("pretrained.bpk").exists();
        let raw = fs::read_to_string(dir.join("metrics.jsonl")).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {e}", dir.join("metrics.jsonl").display()),
            )
        })?;
        let mut text = String::new();
        for line in raw.lines() {
            // Events are history: they stay, whatever is run again.
            let keep = match serde_json::from_str::<MetricPoint>(line) {
                Ok(m) => {
                    pretrained
                        && (m.series.starts_with(series::PRETRAIN)
                            || (m.series.starts_with(series::SOPHON) && m.step <= done))
                }
                Err(_) => serde_json::from_str::<EventLine>(line).is_ok(),
            };
            if keep {
                text.push_str(line);
                text.push('\n');
            }
        }
        write_atomic(&dir.join("metrics.jsonl"), text.as_bytes())?;
        let metrics = OpenOptions::new()
            .append(true)
            .open(dir.join("metrics.jsonl"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics,
        })
    }

    pub fn write_config(&self, config: &ExperimentConfig) -> io::Result<()> {
        write_atomic(&self.dir.join("config.toml"), config.to_toml().as_bytes())
    }

    pub fn write_environment(&self, env: &Environment) -> io::Result<()> {
        write_json(&self.dir.join("environment.json"), env)
    }

    pub fn write_summary(&self, summary: &Summary) -> io::Result<()> {
        write_json(&self.dir.join("summary.json"), summary)
    }

    /// Append one metric point and flush it to disk.
    pub fn append_metric(&mut self, point: &MetricPoint) -> io::Result<()> {
        self.append_line(point)
    }

    /// Append one event line and flush it to disk.
    pub fn append_event(&mut self, event: &EventLine) -> io::Result<()> {
        self.append_line(event)
    }

    fn append_line<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        let mut line = serde_json::to_string(value).map_err(io::Error::other)?;
        line.push('\n');
        self.metrics.write_all(line.as_bytes())?;
        self.metrics.flush()
    }

    pub fn checkpoint_path(&self, name: &str) -> PathBuf {
        self.dir.join("checkpoints").join(format!("{name}.bpk"))
    }

    /// Save a model with burn's recorder (burnpack, written atomically by burn) and record its
    /// checksum.
    pub fn save_model(&self, name: &str, model: &dyn SaveModel) -> Result<PathBuf, StoreError> {
        let path = self.checkpoint_path(name);
        let fail = |e: &dyn std::fmt::Display| StoreError::save(&path, "checkpoint", e);
        model.save_to(&path).map_err(|e| fail(&e))?;
        record_checksums(&self.dir.join("checkpoints"), &[path.as_path()]).map_err(|e| fail(&e))?;
        Ok(path)
    }

    /// Write a sample grid as `samples/<phase>-<domain>-<step>.png` (atomically): one row per
    /// image, the columns clean | noised to step t | denoised, 4× enlarged. Returns the image
    /// and its path.
    pub fn save_samples(
        &self,
        grid: &SampleGrid<'_>,
    ) -> Result<(image::RgbImage, PathBuf), StoreError> {
        let s = grid.samples;
        let image = sample_grid(&[&s.clean, &s.noisy, &s.denoised], s.clean.len(), 4);
        let dir = self.dir.join("samples");
        let path = dir.join(format!("{}-{}-{}.png", grid.phase, grid.domain, grid.step));
        let fail = |e: &dyn std::fmt::Display| StoreError::save(&path, "sample grid", e);
        fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
        let mut png = Vec::new();
        image
            .write_to(&mut io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| fail(&e))?;
        write_atomic(&path, &png).map_err(|e| fail(&e))?;
        Ok((image, path))
    }
}

impl RunFolder {
    /// Save a resumable SOPHON checkpoint: the files go to a new folder, then
    /// `sophon-state.json` is replaced atomically to point at it, then older folders go.
    pub fn save_checkpoint(&self, ck: &Checkpoint<'_>) -> Result<(), StoreError> {
        let name = format!("sophon-{:06}", ck.progress.iteration);
        let base = self.dir.join("checkpoints");
        let dir = base.join(&name);
        let fail = |what: &'static str, e: &dyn std::fmt::Display| StoreError::save(&dir, what, e);
        fs::create_dir_all(&dir).map_err(|e| fail("checkpoint", &e))?;
        ck.model
            .save_to(&dir.join("model.bpk"))
            .map_err(|e| fail("model", &e))?;
        ck.fts_optim
            .save(dir.join("fts-optim.bpk"))
            .map_err(|e| fail("FTS optimizer", &e))?;
        ck.ntr_optim
            .save(dir.join("ntr-optim.bpk"))
            .map_err(|e| fail("NTR optimizer", &e))?;
        let mut files = vec![
            dir.join("model.bpk"),
            dir.join("fts-optim.bpk"),
            dir.join("ntr-optim.bpk"),
        ];
        if let Some(selected) = ck.selected {
            selected
                .save_to(&dir.join("selected.bpk"))
                .map_err(|e| fail("selected model", &e))?;
            files.push(dir.join("selected.bpk"));
        }
        // The checksums are on disk before the state names the folder.
        let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        record_checksums(&base, &files).map_err(|e| fail("checksums", &e))?;
        let state = SophonState {
            dir: name.clone(),
            progress: ck.progress.clone(),
        };
        write_json(&base.join("sophon-state.json"), &state).map_err(|e| fail("state", &e))?;
        for entry in fs::read_dir(&base)
            .map_err(|e| fail("checkpoint", &e))?
            .flatten()
        {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with("sophon-") && n != name && entry.path().is_dir() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        prune_checksums(&base).map_err(|e| fail("checksums", &e))?;
        Ok(())
    }

    /// Where the pre-trained model and the last SOPHON checkpoint are, with SOPHON's optimizers
    /// and progress loaded. `None` when nothing was pre-trained yet (the run starts over).
    pub fn load_resume(&self) -> Result<Option<ResumeFrom>, StoreError> {
        let pretrained = self.checkpoint_path("pretrained");
        if !pretrained.exists() {
            return Ok(None);
        }
        verify_checkpoint(&pretrained)?;
        let state = read_state(&self.dir).map_err(|e| StoreError::load(&self.dir, e))?;
        let sophon = match state {
            None => None,
            Some(state) => {
                let dir = self.dir.join("checkpoints").join(&state.dir);
                verify_checkpoint(&dir.join("model.bpk"))?;
                if state.progress.selected.is_some() {
                    verify_checkpoint(&dir.join("selected.bpk"))?;
                }
                let (fts, ntr) = protect::optimizers();
                let optim = |o: burn::optim::ModuleOptimizer, f: &str| {
                    let path = dir.join(f);
                    verify_checkpoint(&path)?;
                    o.load(&path).map_err(|e| StoreError::load(&path, e))
                };
                Some(protect::Resume {
                    model: dir.join("model.bpk"),
                    fts_optim: optim(fts, "fts-optim.bpk")?,
                    ntr_optim: optim(ntr, "ntr-optim.bpk")?,
                    selected: state.progress.selected.map(|_| dir.join("selected.bpk")),
                    progress: state.progress,
                })
            }
        };
        Ok(Some(ResumeFrom { pretrained, sophon }))
    }
}

/// `checkpoints/checksums.json`: the SHA-256 of every checkpoint file, by its path under
/// `checkpoints/`.
const CHECKSUMS: &str = "checksums.json";

fn sha256_hex(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn read_checksums(base: &Path) -> io::Result<BTreeMap<String, String>> {
    let path = base.join(CHECKSUMS);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// The key of `file` in the manifest of `base` (its path under `base`, with `/`).
fn checksum_key(base: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(base).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// Hash `files` (under `base`) and record them in `base/checksums.json`, atomically.
fn record_checksums(base: &Path, files: &[&Path]) -> io::Result<()> {
    let mut sums = read_checksums(base)?;
    for file in files {
        let key = checksum_key(base, file).ok_or_else(|| {
            io::Error::other(format!(
                "{} is not under {}",
                file.display(),
                base.display()
            ))
        })?;
        sums.insert(key, sha256_hex(file)?);
    }
    write_json(&base.join(CHECKSUMS), &sums)
}

/// Drop the manifest entries of files that are gone (older checkpoint folders).
fn prune_checksums(base: &Path) -> io::Result<()> {
    let mut sums = read_checksums(base)?;
    let before = sums.len();
    sums.retain(|key, _| base.join(key).exists());
    if sums.len() == before {
        return Ok(());
    }
    write_json(&base.join(CHECKSUMS), &sums)
}

/// What [`verify_checkpoint`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The file's SHA-256 is the one recorded when it was written.
    Matches,
    /// No `checksums.json` records it (a file from elsewhere, or an older run folder).
    Unrecorded,
}

/// Check a checkpoint file against the `checksums.json` of the run folder it sits in (found
/// beside it or one folder up). Err, naming the file, when it changed since it was written or
/// cannot be read.
pub fn verify_checkpoint(path: &Path) -> Result<Verified, StoreError> {
    if !path.is_file() {
        return Err(StoreError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let bases = path.ancestors().skip(1).take(2);
    for base in bases {
        if !base.join(CHECKSUMS).is_file() {
            continue;
        }
        let sums = read_checksums(base).map_err(|e| StoreError::load(&base.join(CHECKSUMS), e))?;
        let Some(expected) = checksum_key(base, path).and_then(|k| sums.get(&k).cloned()) else {
            return Ok(Verified::Unrecorded);
        };
        let found = sha256_hex(path).map_err(|e| StoreError::load(path, e))?;
        if found != expected {
            return Err(StoreError::ChecksumMismatch {
                path: path.to_path_buf(),
                recorded: expected.chars().take(12).collect(),
                found: found[..12].to_string(),
            });
        }
        return Ok(Verified::Matches);
    }
    Ok(Verified::Unrecorded)
}

fn read_state(dir: &Path) -> io::Result<Option<SophonState>> {
    let path = dir.join("checkpoints").join("sophon-state.json");
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The outer iteration of a run folder's last SOPHON checkpoint (`None`: none written yet, or
/// unreadable); `resume` continues from it.
pub fn checkpointed_iteration(dir: &Path) -> Option<usize> {
    read_state(dir).ok().flatten().map(|s| s.progress.iteration)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Read every event line of a run folder's `metrics.jsonl`.
pub fn read_events(dir: &Path) -> io::Result<Vec<EventLine>> {
    read_lines(dir)
}

/// Read every metric point of a run folder; a torn last line (a killed run) is skipped.
pub fn read_metrics(dir: &Path) -> io::Result<Vec<MetricPoint>> {
    read_lines(dir)
}

/// The metric points in the last `bytes` of a run folder's `metrics.jsonl` (a partial first line
/// and a torn last one are skipped): how far a run got, without reading a long run's whole file.
pub fn read_last_metrics(dir: &Path, bytes: u64) -> io::Result<Vec<MetricPoint>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(dir.join("metrics.jsonl"))?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(bytes);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    let mut lines = text.lines();
    if start > 0 {
        lines.next();
    }
    Ok(lines.filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// The lines of `metrics.jsonl` that parse as `T` (the others are of another kind, or torn).
fn read_lines<T: serde::de::DeserializeOwned>(dir: &Path) -> io::Result<Vec<T>> {
    let text = fs::read_to_string(dir.join("metrics.jsonl"))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Read `summary.json` of a run folder.
pub fn read_summary(dir: &Path) -> io::Result<Summary> {
    let path = dir.join("summary.json");
    let text = fs::read_to_string(&path)?;
    serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// `YYYYMMDD-HHMMSS` in UTC.
pub(crate) fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_a_killed_run_left_empty_is_used_again_but_one_with_a_run_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        drop(RunFolder::create_at(&dir).unwrap());
        // Killed before it wrote anything: started again in the same folder.
        let mut folder = RunFolder::create_at(&dir).unwrap();
        folder
            .append_metric(&MetricPoint {
                series: "pretrain/loss".into(),
                step: 1,
                value: 2.0,
            })
            .unwrap();
        let err = RunFolder::create_at(&dir).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(read_metrics(&dir).unwrap().len(), 1, "nothing lost");
    }

    #[test]
    fn the_tail_of_the_metrics_reads_the_last_points_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let mut folder = RunFolder::create_at(tmp.path()).unwrap();
        for step in 0..1000 {
            let point = MetricPoint {
                series: "sophon/fts_loss".into(),
                step,
                value: 0.5,
            };
            folder.append_metric(&point).unwrap();
        }
        let tail = read_last_metrics(tmp.path(), 500).unwrap();
        assert!(!tail.is_empty() && tail.len() < 20, "{}", tail.len());
        assert_eq!(tail.last().unwrap().step, 999);
        // Consecutive whole points: the partial first line was dropped, not misread.
        assert!(tail.windows(2).all(|w| w[1].step == w[0].step + 1));
        assert_eq!(read_last_metrics(tmp.path(), 1 << 20).unwrap().len(), 1000);
    }

    #[test]
    fn utc_stamp_formats_known_dates() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_824_000 + 3661);
        assert_eq!(utc_stamp(t), "20261128-010101");
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
    }
}
