//! How long one password check takes as a login runs it (`password::verify` on an argon2id hash
//! with primer's parameters, through the hashing slots), one at a time: the median of RUNS.
//! bench/run compares the login's latency and throughput with it.
//!
//! `cargo run --release -p auth --example verify_timing [RUNS]`

use std::time::{Duration, Instant};

use primer_shared::domain::auth::password::{self, Password, Verdict};

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).map_or(30, |n| n.parse().expect("RUNS is a number"));
    let password = Password::parse_new("correct horse battery".into()).unwrap();
    let stored = password::hash(&password).await.unwrap();
    // The first check also allocates the slot's work memory; a login after a warm start does not.
    assert_eq!(password::verify(&password, &stored).await.unwrap(), Verdict::Match);
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let verdict = password::verify(&password, &stored).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(verdict, Verdict::Match);
    }
    times.sort();
    // As many checks at once as the hashing slots take (one per core), kept busy: the most
    // checks per second this machine gives a login load, with nothing else running.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Twice as many tasks as slots, so that a slot never waits for a task to come back.
    let (count, each) = (cores * 2, (runs / cores).max(1));
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (password, stored) = (password.clone(), stored.clone());
            tokio::spawn(async move {
                for _ in 0..each {
                    assert_eq!(password::verify(&password, &stored).await.unwrap(), Verdict::Match);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let at_once = (count * each) as f64 / started.elapsed().as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "argon2id verify, {runs} runs: median {:.3} ms, fastest {:.3} ms, slowest {:.3} ms",
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1])
    );
    println!("argon2id verify, {cores} at once: {at_once:.1} per second");
}
