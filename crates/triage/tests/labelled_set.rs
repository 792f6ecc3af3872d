//! Accuracy of the built-in rules on the labelled set (dev and held-out splits
//! together). The targets are the ones the service is operated with: an emergency
//! missed is the worst error, a false emergency wakes a duty officer.

use lingshi_triage::eval::{parse_jsonl, Evaluation};
use lingshi_triage::{Category, Triage};

const SET: &str = include_str!("../../../tests/data/triage_messages.jsonl");

#[test]
fn labelled_set_meets_the_accuracy_targets() {
    let set = parse_jsonl(SET).expect("labelled set parses");
    assert!(set.len() >= 360, "labelled set has {} messages", set.len());
    let eval = Evaluation::run(&Triage::builtin(), set);
    let all = eval.confusion(|_| true);
    let er = all.recall(Category::Emergency).unwrap_or(0.0);
    let ep = all.precision(Category::Emergency).unwrap_or(0.0);
    let fr = all.recall(Category::Fraud).unwrap_or(0.0);
    let ok = er >= 0.97 && ep >= 0.90 && fr >= 0.90;
    if !ok {
        println!("{}", eval.report());
    }
    assert!(
        ok,
        "emergency recall {er:.3} (≥ 0.97), emergency precision {ep:.3} (≥ 0.90), fraud recall {fr:.3} (≥ 0.90)"
    );
}

#[test]
fn labelled_set_is_well_formed() {
    let set = parse_jsonl(SET).expect("labelled set parses");
    let zh = set
        .iter()
        .filter(|m| m.locale.as_deref().is_some_and(|l| l.starts_with("zh")))
        .count();
    assert!(
        zh * 2 >= set.len(),
        "at least half the messages are Chinese"
    );
    let holdout = set.iter().filter(|m| m.split == "holdout").count();
    assert!(holdout * 4 >= set.len(), "a held-out part of about a third");
    assert!(set.iter().all(|m| m.split == "dev" || m.split == "holdout"));
    let mut texts: Vec<&str> = set.iter().map(|m| m.text.as_str()).collect();
    texts.sort_unstable();
    let n = texts.len();
    texts.dedup();
    assert_eq!(texts.len(), n, "no duplicate messages");
}
