//! Vendor peaks of the GPUs hybench knows, for the `peak`/`peak_pct` columns.
//!
//! All figures are dense (no 2:4 sparsity) at the boost clock, in TFLOP/s for
//! matrix products and 10^9 bytes/s for device memory. Sources, per device:
//!
//! - V100: "NVIDIA V100 Tensor Core GPU" datasheet (2020): SXM2 7.8 FP64,
//!   15.7 FP32, 125 tensor (FP16), 900 GB/s HBM2; PCIe 7 / 14 / 112, 900 GB/s;
//!   V100S PCIe 8.2 / 16.4 / 130, 1134 GB/s. No TF32 or BF16 tensor cores.
//! - A100: "NVIDIA A100 Tensor Core GPU" datasheet (2021): FP64 Tensor Core
//!   19.5, FP32 19.5, TF32 156, BF16 312, FP16 312 (the datasheet's 312/624
//!   are without/with sparsity); HBM2e 1555 GB/s (40GB), 1935 GB/s (80GB
//!   PCIe), 2039 GB/s (80GB SXM).
//! - H100: "NVIDIA H100 Tensor Core GPU Architecture" whitepaper (2022,
//!   table "H100 SXM5 ... performance", boost clock) for SXM: FP64 Tensor Core
//!   66.9, FP32 66.9, TF32 494.7, BF16 989.4, FP16 989.4; "NVIDIA H100 Tensor
//!   Core GPU" datasheet for PCIe (51 / 51 / 378 / 756 / 756, 2.0 TB/s) and NVL
//!   (60 / 60 / 417.5 / 835.5 / 835.5, 3.9 TB/s; the datasheet prints sparse
//!   figures with an asterisk: dense is half), SXM memory 3.35 TB/s.
//! - H200: "NVIDIA H200 Tensor Core GPU" datasheet (2024): SXM FP64 Tensor
//!   Core 67, FP32 67, TF32 494.5, BF16 989.5, FP16 989.5 (half the printed
//!   sparse 989 / 1979 / 1979), HBM3e 4.8 TB/s; NVL 60 / 60 / 417.5 / 835.5 /
//!   835.5, 4.8 TB/s.
//!
//! FP64 GEMM peaks are the FP64 Tensor Core figures where the chip has them
//! (A100, H100, H200): cuBLAS DGEMM runs on them. Host<->device copies are
//! compared with the PCIe link (see [`pcie_gbs`]), not with memory.

/// Peaks of one GPU model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DevicePeaks {
    pub model: &'static str,
    pub fp64: f64,
    pub fp32: f64,
    pub tf32: Option<f64>,
    pub bf16: Option<f64>,
    pub fp16: f64,
    /// Device memory bandwidth, 10^9 bytes/s.
    pub mem_gbs: f64,
    pub source: &'static str,
}

impl DevicePeaks {
    /// The memory bandwidth peak of a row, and where it comes from (the note
    /// under the table).
    pub fn memory(&self) -> (f64, String) {
        (
            self.mem_gbs,
            format!(
                "{} memory {} GB/s ({})",
                self.model, self.mem_gbs, self.source
            ),
        )
    }
}

const V100_SXM2: DevicePeaks = DevicePeaks {
    model: "V100 SXM2",
    fp64: 7.8,
    fp32: 15.7,
    tf32: None,
    bf16: None,
    fp16: 125.0,
    mem_gbs: 900.0,
    source: "NVIDIA V100 datasheet",
};
const V100_PCIE: DevicePeaks = DevicePeaks {
    model: "V100 PCIe",
    fp64: 7.0,
    fp32: 14.0,
    tf32: None,
    bf16: None,
    fp16: 112.0,
    mem_gbs: 900.0,
    source: "NVIDIA V100 datasheet",
};
const V100S_PCIE: DevicePeaks = DevicePeaks {
    model: "V100S PCIe",
    fp64: 8.2,
    fp32: 16.4,
    tf32: None,
    bf16: None,
    fp16: 130.0,
    mem_gbs: 1134.0,
    source: "NVIDIA V100 datasheet",
};
const fn a100(model: &'static str, mem_gbs: f64) -> DevicePeaks {
    DevicePeaks {
        model,
        fp64: 19.5,
        fp32: 19.5,
        tf32: Some(156.0),
        bf16: Some(312.0),
        fp16: 312.0,
        mem_gbs,
        source: "NVIDIA A100 datasheet",
    }
}
const H100_SXM: DevicePeaks = DevicePeaks {
    model: "H100 SXM5",
    fp64: 66.9,
    fp32: 66.9,
    tf32: Some(494.7),
    bf16: Some(989.4),
    fp16: 989.4,
    mem_gbs: 3350.0,
    source: "NVIDIA H100 whitepaper/datasheet",
};
const H100_PCIE: DevicePeaks = DevicePeaks {
    model: "H100 PCIe",
    fp64: 51.0,
    fp32: 51.0,
    tf32: Some(378.0),
    bf16: Some(756.0),
    fp16: 756.0,
    mem_gbs: 2000.0,
    source: "NVIDIA H100 datasheet",
};
const H100_NVL: DevicePeaks = DevicePeaks {
    model: "H100 NVL",
    fp64: 60.0,
    fp32: 60.0,
    tf32: Some(417.5),
    bf16: Some(835.5),
    fp16: 835.5,
    mem_gbs: 3900.0,
    source: "NVIDIA H100 datasheet",
};
const H200_SXM: DevicePeaks = DevicePeaks {
    model: "H200 SXM",
    fp64: 67.0,
    fp32: 67.0,
    tf32: Some(494.5),
    bf16: Some(989.5),
    fp16: 989.5,
    mem_gbs: 4800.0,
    source: "NVIDIA H200 datasheet",
};
const H200_NVL: DevicePeaks = DevicePeaks {
    model: "H200 NVL",
    fp64: 60.0,
    fp32: 60.0,
    tf32: Some(417.5),
    bf16: Some(835.5),
    fp16: 835.5,
    mem_gbs: 4800.0,
    source: "NVIDIA H200 datasheet",
};

/// The peaks of a device from its name (as CUDA/NVML print it, e.g.
/// `NVIDIA H100 80GB HBM3`, `NVIDIA A100-SXM4-80GB`, `Tesla V100-PCIE-32GB`).
/// None for a device this table does not know (the columns stay empty).
pub fn detect(name: &str) -> Option<DevicePeaks> {
    let n = name.to_ascii_uppercase();
    let pcie = n.contains("PCIE");
    if n.contains("H200") {
        return Some(if n.contains("NVL") {
            H200_NVL
        } else {
            H200_SXM
        });
    }
    if n.contains("H100") {
        return Some(if n.contains("NVL") {
            H100_NVL
        } else if pcie {
            H100_PCIE
        } else {
            // `NVIDIA H100 80GB HBM3` and `H100 SXM5` are the SXM part.
            H100_SXM
        });
    }
    if n.contains("A100") {
        let big = n.contains("80GB");
        return Some(match (pcie, big) {
            (true, true) => a100("A100 80GB PCIe", 1935.0),
            (false, true) => a100("A100 80GB SXM4", 2039.0),
            (true, false) => a100("A100 40GB PCIe", 1555.0),
            (false, false) => a100("A100 40GB SXM4", 1555.0),
        });
    }
    if n.contains("V100S") {
        return Some(V100S_PCIE);
    }
    if n.contains("V100") {
        return Some(if pcie { V100_PCIE } else { V100_SXM2 });
    }
    None
}

/// Theoretical bandwidth of one direction of a PCIe link in 10^9 bytes/s:
/// transfer rate x lanes x encoding efficiency / 8 (PCI Express Base
/// Specification: 2.5 and 5 GT/s with 8b/10b; 8, 16 and 32 GT/s with
/// 128b/130b; 64 GT/s FLIT mode, 242/256 usable). Gen 5 x16: 63.0 GB/s.
pub fn pcie_gbs(gen_: u32, width: u32) -> Option<f64> {
    let (gts, eff) = match gen_ {
        1 => (2.5, 0.8),
        2 => (5.0, 0.8),
        3 => (8.0, 128.0 / 130.0),
        4 => (16.0, 128.0 / 130.0),
        5 => (32.0, 128.0 / 130.0),
        6 => (64.0, 242.0 / 256.0),
        _ => return None,
    };
    (width > 0).then(|| gts * width as f64 * eff / 8.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_models() {
        let m = |s: &str| detect(s).map(|p| p.model);
        assert_eq!(m("NVIDIA H200"), Some("H200 SXM"));
        assert_eq!(m("NVIDIA H200 NVL"), Some("H200 NVL"));
        assert_eq!(m("NVIDIA H100 80GB HBM3"), Some("H100 SXM5"));
        assert_eq!(m("NVIDIA H100 PCIe"), Some("H100 PCIe"));
        assert_eq!(m("NVIDIA H100 NVL"), Some("H100 NVL"));
        assert_eq!(m("NVIDIA A100-SXM4-80GB"), Some("A100 80GB SXM4"));
        assert_eq!(m("NVIDIA A100 80GB PCIe"), Some("A100 80GB PCIe"));
        assert_eq!(m("NVIDIA A100-PCIE-40GB"), Some("A100 40GB PCIe"));
        assert_eq!(m("Tesla V100-SXM2-16GB"), Some("V100 SXM2"));
        assert_eq!(m("Tesla V100-PCIE-32GB"), Some("V100 PCIe"));
        assert_eq!(m("Tesla V100S-PCIE-32GB"), Some("V100S PCIe"));
        assert_eq!(m("NVIDIA GeForce RTX 4090"), None);
        assert_eq!(detect("NVIDIA H200").map(|p| p.mem_gbs), Some(4800.0));
        assert!(detect("Tesla V100-SXM2-16GB").unwrap().bf16.is_none());
        assert_eq!(
            detect("NVIDIA H200").unwrap().memory(),
            (
                4800.0,
                "H200 SXM memory 4800 GB/s (NVIDIA H200 datasheet)".to_string()
            )
        );
    }

    #[test]
    fn pcie_links() {
        let g5 = pcie_gbs(5, 16).unwrap();
        assert!((g5 - 63.015).abs() < 0.01, "{g5}");
        assert!((pcie_gbs(4, 16).unwrap() - 31.5).abs() < 0.01);
        assert_eq!(pcie_gbs(9, 16), None);
        assert_eq!(pcie_gbs(4, 0), None);
    }
}
