//! Why an engine died: the signal a server process was terminated by, read from the
//! engine's log, with the statement it was running and the likely cause.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The engine's log from byte `offset` on (what it wrote since a step began).
pub(super) fn read_from(log: &Path, offset: u64) -> String {
    let Ok(mut file) = std::fs::File::open(log) else {
        return String::new();
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a signal that ends a server process usually means.
fn likely_cause(signal: u32) -> &'static str {
    match signal {
        4 => {
            "the binary uses a CPU instruction this CPU does not have: it was built for its \
             build host's CPU (often AVX-512). Use a build for any x86-64 CPU with AVX2 \
             (`cargo xtask services up` installs one; `cargo test -p xtask avx512` checks it)"
        }
        6 => "the engine aborted on a failed internal check (an assertion or a library mismatch)",
        7 => "a memory-mapped file or shared memory failed (is /dev/shm or the disk full?)",
        9 => {
            "it was killed from outside, most often by the kernel's out-of-memory killer (see `dmesg`)"
        }
        11 => "a memory error in the engine or an extension, or a library of another version",
        _ => "see the log below",
    }
}

fn signal_name(signal: u32) -> &'static str {
    match signal {
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// A message for an engine `label` that failed a step, from the log it wrote meanwhile:
/// the signal, the statement the process was running and the likely cause when the log
/// says a process was terminated by a signal, else the log's last lines.
pub(super) fn explain(label: &str, log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let crash = lines.iter().enumerate().find_map(|(i, line)| {
        let (_, after) = line.split_once("terminated by signal ")?;
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        Some((i, digits.parse::<u32>().ok()?))
    });
    let tail: Vec<&str> = lines.iter().rev().take(15).rev().copied().collect();
    let Some((at, signal)) = crash else {
        return format!("{label}'s log since the step began:\n{}", tail.join("\n"));
    };
    let running = lines[at..].iter().take(3).find_map(|line| {
        line.split_once("Failed process was running: ")
            .map(|(_, s)| s.trim())
    });
    let during = running.map_or_else(String::new, |s| format!(" while running `{s}`"));
    format!(
        "{label} crashed: a server process was terminated by signal {signal} ({}){during}. \
         Likely cause: {}.\n{label}'s log:\n{}",
        signal_name(signal),
        likely_cause(signal),
        tail.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_signal_the_statement_and_the_cause() {
        let log = "\
2026-12-01 10:00:00 UTC [1] LOG:  server process (PID 42) was terminated by signal 4: Illegal instruction
2026-12-01 10:00:00 UTC [1] DETAIL:  Failed process was running: CREATE INDEX vecs_hnsw ON vecs USING hnsw (embedding vector_cosine_ops)
2026-12-01 10:00:00 UTC [1] LOG:  terminating any other active server processes";
        let text = explain("PostgreSQL with pgvector", log);
        assert!(
            text.starts_with("PostgreSQL with pgvector crashed"),
            "{text}"
        );
        assert!(text.contains("signal 4 (SIGILL)"), "{text}");
        assert!(
            text.contains("while running `CREATE INDEX vecs_hnsw"),
            "{text}"
        );
        assert!(text.contains("AVX-512"), "{text}");
    }

    #[test]
    fn without_a_crash_it_shows_the_log() {
        let text = explain("Redis", "ERR unknown command\nsomething else");
        assert!(text.contains("Redis's log"), "{text}");
        assert!(text.contains("ERR unknown command"), "{text}");
        assert!(!text.contains("crashed"), "{text}");
    }
}
