//! Cost of one classification, printed (never asserted):
//!
//! ```text
//! cargo run --release -p lingshi-triage --example triage_bench
//! ```
//!
//! Every message of the labelled set is classified many times and each call is timed;
//! then 4,000-character messages (Chinese, English, mixed, with and without signals).

use std::hint::black_box;
use std::time::{Duration, Instant};

use lingshi_triage::eval::parse_jsonl;
use lingshi_triage::Triage;

const SET: &str = include_str!("../../../tests/data/triage_messages.jsonl");

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run(name: &str, t: &Triage, texts: &[String], rounds: usize) {
    let mut times = Vec::with_capacity(texts.len() * rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        for s in texts {
            let t0 = Instant::now();
            black_box(t.classify(black_box(s), None));
            times.push(t0.elapsed());
        }
    }
    let wall = start.elapsed();
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{name:<34} n={:<6} median {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs   {:>9.0} msg/s on one core",
        times.len(),
        us(percentile(&times, 0.5)),
        us(percentile(&times, 0.99)),
        us(*times.last().unwrap()),
        times.len() as f64 / wall.as_secs_f64()
    );
}

fn to_chars(s: &str, n: usize) -> String {
    s.chars().cycle().take(n).collect()
}

fn main() {
    let t0 = Instant::now();
    let triage = Triage::builtin();
    println!(
        "rules compiled in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let t1 = Instant::now();
    triage.warm_up();
    println!(
        "segmentation dictionary loaded in {:.1} ms",
        t1.elapsed().as_secs_f64() * 1e3
    );

    let set = parse_jsonl(SET).expect("labelled set");
    let all: Vec<String> = set.iter().map(|m| m.text.clone()).collect();
    let zh: Vec<String> = set
        .iter()
        .filter(|m| {
            m.text
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        })
        .map(|m| m.text.clone())
        .collect();
    let en: Vec<String> = set
        .iter()
        .filter(|m| {
            !m.text
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        })
        .map(|m| m.text.clone())
        .collect();
    let routine: Vec<String> = set
        .iter()
        .filter(|m| m.label.as_str() == "routine")
        .map(|m| m.text.clone())
        .collect();
    run("labelled set, all", &triage, &all, 50);
    run("labelled set, with Han", &triage, &zh, 50);
    run("labelled set, Latin only", &triage, &en, 50);
    run("labelled set, routine only", &triage, &routine, 50);

    let joined_zh: String = zh.concat();
    let joined_en: String = en.join(" ");
    let joined_all: String = all.join(" ");
    let quiet_zh =
        "请问在这边办理护照换发需要准备哪些材料，照片有什么要求，大概多久可以拿到，谢谢。";
    let quiet_en = "Hello, I would like to know which documents are needed to renew a passport here and how long it takes. ";
    let long = vec![
        to_chars(&joined_zh, 4000),
        to_chars(&joined_en, 4000),
        to_chars(&joined_all, 4000),
        to_chars(quiet_zh, 4000),
        to_chars(quiet_en, 4000),
    ];
    let names = [
        "4,000 chars: Chinese from the set",
        "4,000 chars: English from the set",
        "4,000 chars: mixed from the set",
        "4,000 chars: routine Chinese",
        "4,000 chars: routine English",
    ];
    for (name, text) in names.iter().zip(&long) {
        run(name, &triage, std::slice::from_ref(text), 200);
    }
}
