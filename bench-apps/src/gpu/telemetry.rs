//! NVML telemetry, sampled in a background thread while a benchmark runs.
//!
//! The thread owns its own NVML handle (NVML counts initialisations) and the
//! device looked up by PCI bus id, so it needs nothing from the benchmark
//! thread. Each sample carries its time; a result row is summarised from the
//! samples taken inside its time window. A failure to read one quantity
//! leaves that quantity empty: telemetry never stops a benchmark.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};

/// Static facts NVML knows about the device.
#[derive(Debug, Clone, Default)]
pub struct NvmlInfo {
    pub name: String,
    pub driver_version: String,
    /// Maximum PCIe generation and width of the GPU's link.
    pub pcie: Option<(u32, u32)>,
}

pub fn device_info(bus_id: &str) -> Result<NvmlInfo, String> {
    let nvml = hybrun_core::nvml::open()?;
    let dev = nvml
        .device_by_pci_bus_id(bus_id)
        .map_err(|e| format!("NVML has no device at {bus_id}: {e}"))?;
    let pcie = match (dev.max_pcie_link_gen(), dev.max_pcie_link_width()) {
        (Ok(g), Ok(w)) => Some((g, w)),
        _ => None,
    };
    Ok(NvmlInfo {
        name: dev.name().unwrap_or_default(),
        driver_version: nvml.sys_driver_version().unwrap_or_default(),
        pcie,
    })
}

/// One reading. Missing quantities are None.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub sm_mhz: Option<f64>,
    pub mem_mhz: Option<f64>,
    pub power_w: Option<f64>,
    pub temp_c: Option<f64>,
    pub util_pct: Option<f64>,
    pub throttle: Option<u64>,
    pub ecc_corrected: Option<u64>,
    pub ecc_uncorrected: Option<u64>,
}

/// The running sampler. Dropping it stops the thread.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
    pub interval: Duration,
}

impl Sampler {
    /// Start sampling the GPU at `bus_id` every `interval`. Errors (no NVML,
    /// no such device) are returned before the thread starts.
    pub fn start(bus_id: &str, interval: Duration) -> Result<Sampler, String> {
        // Check on this thread first so the caller learns why there is no telemetry.
        {
            let nvml = hybrun_core::nvml::open()?;
            nvml.device_by_pci_bus_id(bus_id)
                .map_err(|e| format!("NVML has no device at {bus_id}: {e}"))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s2, v2, id) = (stop.clone(), samples.clone(), bus_id.to_string());
        let thread = std::thread::Builder::new()
            .name("nvml-sampler".into())
            .spawn(move || {
                let Ok(nvml) = hybrun_core::nvml::open() else {
                    return;
                };
                let Ok(dev) = nvml.device_by_pci_bus_id(id.as_str()) else {
                    return;
                };
                while !s2.load(Ordering::Relaxed) {
                    let s = Sample {
                        at: Instant::now(),
                        sm_mhz: dev.clock_info(Clock::SM).ok().map(f64::from),
                        mem_mhz: dev.clock_info(Clock::Memory).ok().map(f64::from),
                        power_w: dev.power_usage().ok().map(|mw| mw as f64 / 1000.0),
                        temp_c: dev.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
                        util_pct: dev.utilization_rates().ok().map(|u| u.gpu as f64),
                        throttle: dev.current_throttle_reasons().ok().map(|r| r.bits()),
                        ecc_corrected: dev
                            .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)
                            .ok(),
                        ecc_uncorrected: dev
                            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
                            .ok(),
                    };
                    if let Ok(mut v) = v2.lock() {
                        v.push(s);
                    }
                    std::thread::sleep(interval);
                }
            })
            .map_err(|e| format!("cannot start the NVML sampler thread: {e}"))?;
        Ok(Sampler {
            stop,
            samples,
            thread: Some(thread),
            interval,
        })
    }

    /// Stop the thread and return every sample.
    pub fn finish(mut self) -> Vec<Sample> {
        self.halt();
        self.samples
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Per-row summary of one rank's samples, as a fixed-length vector so that
/// ranks can gather it with one MPI_Gather (NaN = missing).
pub const SUMMARY_LEN: usize = 17;

fn med(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    hybrun_core::stats::quantile_sorted(v, 0.5)
}

/// Summarise the samples inside [start, end]; if none fell inside (a row
/// shorter than the interval), the one nearest to the window's end.
pub fn summarise(samples: &[Sample], start: Instant, end: Instant) -> [f64; SUMMARY_LEN] {
    let mut inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= start && s.at <= end)
        .collect();
    if inside.is_empty() {
        if let Some(s) = samples
            .iter()
            .min_by_key(|s| if s.at > end { s.at - end } else { end - s.at })
        {
            inside.push(s);
        }
    }
    let mut out = [f64::NAN; SUMMARY_LEN];
    out[0] = inside.len() as f64;
    let mut put = |base: usize, vals: Vec<f64>| {
        if !vals.is_empty() {
            let mut v = vals;
            out[base] = v.iter().copied().fold(f64::INFINITY, f64::min);
            out[base + 2] = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            out[base + 1] = med(&mut v);
        }
    };
    put(1, inside.iter().filter_map(|s| s.sm_mhz).collect());
    put(4, inside.iter().filter_map(|s| s.mem_mhz).collect());
    put(7, inside.iter().filter_map(|s| s.power_w).collect());
    put(10, inside.iter().filter_map(|s| s.temp_c).collect());
    let mut util: Vec<f64> = inside.iter().filter_map(|s| s.util_pct).collect();
    out[13] = med(&mut util);
    let bits: Vec<u64> = inside.iter().filter_map(|s| s.throttle).collect();
    if !bits.is_empty() {
        out[14] = bits.iter().fold(0u64, |a, b| a | b) as f64;
    }
    if let Some(last) = inside.last() {
        out[15] = last.ecc_corrected.map(|v| v as f64).unwrap_or(f64::NAN);
        out[16] = last.ecc_uncorrected.map(|v| v as f64).unwrap_or(f64::NAN);
    }
    out
}

/// Combined telemetry of all ranks for one row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowTelemetry {
    pub samples: u64,
    pub sm: [Option<f64>; 3],
    pub mem: [Option<f64>; 3],
    pub power: [Option<f64>; 3],
    pub temp: [Option<f64>; 3],
    pub util_median: Option<f64>,
    pub throttle: String,
    pub ecc: String,
}

/// Combine per-rank summaries: min of minima, median of medians, max of
/// maxima, union of throttle reasons, ECC counts summed over the GPUs.
pub fn combine(per_rank: &[[f64; SUMMARY_LEN]]) -> RowTelemetry {
    let finite = |i: usize| -> Vec<f64> {
        per_rank
            .iter()
            .map(|r| r[i])
            .filter(|v| v.is_finite())
            .collect()
    };
    let triple = |base: usize| -> [Option<f64>; 3] {
        let lo = finite(base).into_iter().reduce(f64::min);
        let mut m = finite(base + 1);
        let mid = (!m.is_empty()).then(|| med(&mut m));
        let hi = finite(base + 2).into_iter().reduce(f64::max);
        [lo, mid, hi]
    };
    let mut util = finite(13);
    let throttle_bits: Vec<u64> = finite(14).into_iter().map(|b| b as u64).collect();
    let throttle = if throttle_bits.is_empty() {
        String::new()
    } else {
        throttle_names(throttle_bits.iter().fold(0, |a, b| a | b))
    };
    let (c, u) = (finite(15), finite(16));
    let ecc = if c.is_empty() && u.is_empty() {
        String::new()
    } else {
        let count = |v: &[f64]| {
            if v.is_empty() {
                "?".to_string()
            } else {
                (v.iter().sum::<f64>() as u64).to_string()
            }
        };
        format!("corrected={} uncorrected={}", count(&c), count(&u))
    };
    RowTelemetry {
        samples: finite(0).iter().sum::<f64>() as u64,
        sm: triple(1),
        mem: triple(4),
        power: triple(7),
        temp: triple(10),
        util_median: (!util.is_empty()).then(|| med(&mut util)),
        throttle,
        ecc,
    }
}

/// Names of throttle reason bits, `+`-joined; `none` for no reason.
pub fn throttle_names(bits: u64) -> String {
    let r = ThrottleReasons::from_bits_truncate(bits);
    let names: Vec<&str> = [
        (ThrottleReasons::GPU_IDLE, "idle"),
        (ThrottleReasons::APPLICATIONS_CLOCKS_SETTING, "app_clocks"),
        (ThrottleReasons::SW_POWER_CAP, "sw_power_cap"),
        (ThrottleReasons::HW_SLOWDOWN, "hw_slowdown"),
        (ThrottleReasons::SYNC_BOOST, "sync_boost"),
        (ThrottleReasons::SW_THERMAL_SLOWDOWN, "sw_thermal"),
        (ThrottleReasons::HW_THERMAL_SLOWDOWN, "hw_thermal"),
        (ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake"),
        (ThrottleReasons::DISPLAY_CLOCK_SETTING, "display_clocks"),
    ]
    .iter()
    .filter(|(f, _)| r.contains(*f))
    .map(|(_, n)| *n)
    .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join("+")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, sm: f64, thr: u64) -> Sample {
        Sample {
            at,
            sm_mhz: Some(sm),
            mem_mhz: Some(2619.0),
            power_w: Some(sm / 10.0),
            temp_c: None,
            util_pct: Some(100.0),
            throttle: Some(thr),
            ecc_corrected: Some(0),
            ecc_uncorrected: None,
        }
    }

    #[test]
    fn summaries_window_and_combine() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let s = vec![
            sample(ms(0), 1000.0, 0),
            sample(ms(50), 1980.0, ThrottleReasons::SW_POWER_CAP.bits()),
            sample(ms(100), 1900.0, 0),
            sample(ms(150), 1200.0, ThrottleReasons::GPU_IDLE.bits()),
        ];
        let a = summarise(&s, ms(40), ms(110));
        assert_eq!(a[0], 2.0);
        assert_eq!((a[1], a[2], a[3]), (1900.0, 1940.0, 1980.0));
        assert!(a[10].is_nan(), "no temperature read");
        // A window between samples takes the nearest one.
        let b = summarise(&s, ms(151), ms(152));
        assert_eq!((b[0], b[1]), (1.0, 1200.0));
        let t = combine(&[a, b]);
        assert_eq!(t.samples, 3);
        assert_eq!(t.sm, [Some(1200.0), Some(1570.0), Some(1980.0)]);
        assert_eq!(t.temp, [None, None, None]);
        assert_eq!(t.throttle, "idle+sw_power_cap");
        assert_eq!(t.ecc, "corrected=0 uncorrected=?");
        assert_eq!(throttle_names(0), "none");
        assert_eq!(combine(&[]).throttle, "");
    }
}
