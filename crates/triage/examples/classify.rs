//! Classify the texts given as arguments (or one per line on standard input) and print
//! each verdict with its reasons: a quick way for editors to try the rules.

use std::io::BufRead;

fn main() {
    let t = lingshi_triage::Triage::builtin();
    let texts: Vec<String> = match std::env::args().skip(1).collect::<Vec<_>>() {
        a if !a.is_empty() => a,
        _ => std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .collect(),
    };
    for text in texts {
        let a = t.classify(&text, None);
        println!("{:?} {:.3}  {text}", a.category, a.score);
        for r in &a.reasons {
            println!("    {r:?}");
        }
    }
}
