//! Replays every kept fuzz input on stable Rust, through the very functions the cargo-fuzz
//! targets call (`fuzz/src/checks.rs`): the crash inputs in `fuzz/regressions/<target>/` and the
//! seed corpus in `fuzz/seeds/<target>/`. A panic here is the fuzz crash coming back.

#[allow(dead_code)]
#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Feeds every file under `fuzz/<kind>/<target>/` to its target and fails naming every input
/// that panicked; returns how many ran. A directory that names no target fails, so a renamed
/// target cannot silently skip its inputs.
fn replay(kind: &str) -> usize {
    let root = fuzz_dir().join(kind);
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return 0;
    };
    let mut count = 0;
    let mut failed = Vec::new();
    for dir in dirs {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (_, check) = checks::TARGETS
            .iter()
            .find(|(target, _)| *target == name)
            .unwrap_or_else(|| panic!("{} names no fuzz target", dir.display()));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for file in files {
            let input = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| check(&input)).is_err() {
                failed.push(format!(
                    "{name}: {} ({} bytes)",
                    file.display(),
                    input.len()
                ));
            }
            count += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that panic:\n{}",
        failed.join("\n")
    );
    count
}

#[test]
fn kept_fuzz_crash_inputs_no_longer_crash() {
    let count = replay("regressions");
    println!("replayed {count} regression inputs");
}

#[test]
fn fuzz_seed_inputs_pass_every_check() {
    let count = replay("seeds");
    assert!(count > 0, "fuzz/seeds/ holds the seed corpus");
    println!("replayed {count} seed inputs");
}

#[test]
fn every_fuzz_target_has_a_check_and_a_seed_directory() {
    for (target, _) in checks::TARGETS {
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "{target}"
        );
        assert!(fuzz_dir().join("seeds").join(target).is_dir(), "{target}");
    }
}

/// The root cause of the float inputs in `fuzz/regressions/`: serde_json's default float parser
/// is best-effort and can be one ulp off, so a float Flask stored reaches handlers changed and
/// drifts on every write back. Its `float_roundtrip` feature parses exactly (as Python does).
#[test]
fn json_floats_are_read_exactly() {
    use satchel::Codec;
    use satchel_core::rmpv::Value;

    // repr() of this double in Python and Rust alike.
    let x = 0.003_662_109_375_909_494_7_f64;
    assert_eq!(x.to_string(), "0.0036621093759094947");
    let session = Codec::default()
        .decode(br#"{"f": 0.0036621093759094947}"#)
        .unwrap();
    assert_eq!(session["f"], Value::F64(x));
    assert_eq!(
        serde_json::from_str::<f64>("0.0036621093759094947").unwrap(),
        x
    );
}
