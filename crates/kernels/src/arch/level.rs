//! Which vector instructions this build of the kernels uses, and which the CPU has.
//!
//! This is the one place whose values follow the build's target features:
//! [`SimdLevel::COMPILED`] (and [`FMA`]). Everything else that depends on the instruction
//! set follows from it (the tiles and [`Lanes::BUILD`](super::Lanes::BUILD)); only code
//! that exists for one instruction set alone (the AVX2 shuffles of `pool/vector.rs`) is
//! compiled by `#[cfg]` of its own.
//!
//! `wide` picks its instructions when the crate is compiled: without `-C target-cpu` (or
//! `-C target-feature=+avx2,+fma`) an `f32x8` is two SSE halves and `mul_add` is not fused,
//! and the kernels run several times slower than the CPU allows. [`SimdLevel::COMPILED`]
//! says what this build uses, [`SimdLevel::detect`] what the CPU running it has, and
//! [`simd_warning`] the one-line advice when they differ. A program that links
//! `petal-kernels` can print it at start, as the `trainer` binary does:
//!
//! ```
//! if let Some(w) = petal_kernels::simd_warning() {
//!     eprintln!("warning: {w}");
//! }
//! ```

use std::fmt;

/// A level of x86-64 vector support, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// No x86-64 vector extension beyond the baseline (SSE2), or not an x86-64 CPU: `wide`
    /// emulates 8 and 16 lanes with 128-bit (or scalar) operations.
    Baseline,
    /// AVX2 with FMA (`x86-64-v3`): 8 lanes in one register, fused multiply-add.
    Avx2,
    /// AVX-512F (`x86-64-v4`): 16 lanes in one register, 32 registers.
    Avx512,
}

/// Whether this build has fused multiply-add instructions (`+fma`, part of `x86-64-v3`):
/// `wide`'s vector `mul_add` is fused then, and [`simd::fma`](crate::simd::fma) fuses the
/// scalar tails to match.
pub(crate) const FMA: bool = cfg!(target_feature = "fma");

impl SimdLevel {
    /// The level this build of the crate was compiled for.
    pub const COMPILED: SimdLevel = if cfg!(target_feature = "avx512f") {
        SimdLevel::Avx512
    } else if cfg!(target_feature = "avx2") && FMA {
        SimdLevel::Avx2
    } else {
        SimdLevel::Baseline
    };

    /// The level the CPU running this process supports (checked at run time).
    pub fn detect() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    }

    /// The name used in reports and JSON: `baseline`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// The `-C target-cpu` that compiles for this level.
    fn target_cpu(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "x86-64",
            SimdLevel::Avx2 => "x86-64-v3",
            SimdLevel::Avx512 => "x86-64-v4",
        }
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The advice for a build compiled for `compiled` running on a CPU with `cpu`: `None` when
/// the build uses everything the CPU has (or more: then it would not run at all).
pub fn simd_warning_for(compiled: SimdLevel, cpu: SimdLevel) -> Option<String> {
    (cpu > compiled).then(|| {
        format!(
            "petal-kernels was compiled for {compiled} but this CPU has {cpu}: the kernels run several times slower than they could; \
             rebuild with RUSTFLAGS=\"-C target-cpu=native\" (or \"-C target-cpu={}\" for any {cpu} machine)",
            cpu.target_cpu()
        )
    })
}

/// [`simd_warning_for`] this build on this CPU.
pub fn simd_warning() -> Option<String> {
    simd_warning_for(SimdLevel::COMPILED, SimdLevel::detect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_level_follows_the_target_features() {
        assert_eq!(
            SimdLevel::COMPILED == SimdLevel::Avx512,
            cfg!(target_feature = "avx512f")
        );
        // What the build uses, this CPU runs (the process would not have started otherwise).
        let cpu = SimdLevel::detect();
        assert!(cpu >= SimdLevel::COMPILED);
        // A native build (the workspace's default) warns of nothing; a build for less than
        // the CPU has (RUSTFLAGS="-C target-cpu=x86-64-v3" on an AVX-512 machine) does.
        assert_eq!(simd_warning().is_some(), cpu > SimdLevel::COMPILED);
        assert_eq!(simd_warning(), simd_warning_for(SimdLevel::COMPILED, cpu));
    }

    #[test]
    fn simd_warning_for_names_both_levels_and_the_fix() {
        use SimdLevel::*;
        for (compiled, cpu) in [(Baseline, Avx2), (Baseline, Avx512), (Avx2, Avx512)] {
            let w = simd_warning_for(compiled, cpu).unwrap();
            assert!(
                w.contains(&format!("compiled for {compiled} but this CPU has {cpu}")),
                "{w}"
            );
            assert!(w.contains("RUSTFLAGS=\"-C target-cpu=native\""), "{w}");
        }
        assert!(simd_warning_for(Avx2, Avx512)
            .unwrap()
            .contains("target-cpu=x86-64-v4"));
        for l in [Baseline, Avx2, Avx512] {
            assert_eq!(simd_warning_for(l, l), None);
        }
        assert_eq!(simd_warning_for(Avx512, Avx2), None);
    }
}
