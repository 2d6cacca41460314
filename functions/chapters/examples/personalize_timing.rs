//! How long the rule-based engine takes on a 50 KB chapter (the sample book's text, cut just
//! past 50 KiB), as the median of many runs.
//!
//! `cargo run --release -p chapters --example personalize_timing [RUNS]`

use std::path::Path;
use std::time::{Duration, Instant};

use primer_shared::domain::personalize::{ReaderProfile, personalize};
use primer_shared::domain::profile::examples::api_example;
use primer_shared::domain::profile::{ProfileHash, ProfileInput};

const SIZE: usize = 50 * 1024;

fn main() {
    let runs: usize = std::env::args().nth(1).map_or(200, |n| n.parse().expect("RUNS is a number"));
    let chapter = fifty_kilobytes();
    // The example profile with every facet set.
    let profile = serde_json::from_value::<ProfileInput>(api_example()).unwrap().parse().unwrap();
    let reader = ReaderProfile {
        reader: primer_shared::domain::personalize::Reader::of(&profile).unwrap(),
        profile_hash: ProfileHash::of(&profile),
        profile,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let made = runtime.block_on(personalize(&chapter, &reader, None));
            let elapsed = started.elapsed();
            assert!(!made.markdown.is_empty());
            elapsed
        })
        .collect();
    times.sort();
    println!(
        "rule engine, {} bytes, {runs} runs: median {:?}, fastest {:?}, slowest {:?}",
        chapter.len(),
        times[runs / 2],
        times[0],
        times[runs - 1]
    );
}

/// The book's chapters end to end, up to the first line break after 50 KiB.
fn fifty_kilobytes() -> String {
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../content/book");
    let mut files: Vec<_> = std::fs::read_dir(&book).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let all: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let cut = all[SIZE..].find('\n').map_or(all.len(), |i| SIZE + i + 1);
    all[..cut].to_owned()
}
