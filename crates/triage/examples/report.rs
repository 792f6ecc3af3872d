//! Accuracy report of the built-in rules (or a rules file given with `--rules`) on a
//! labelled set: per class, per split, per case, the confusion matrix and every miss.
//!
//! ```text
//! cargo run -p lingshi-triage --example report [path/to/set.jsonl] [--rules path/to/triage.toml]
//! ```

use std::process::ExitCode;

use lingshi_triage::eval::{parse_jsonl, Evaluation};
use lingshi_triage::Triage;

fn main() -> ExitCode {
    let mut set_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/triage_messages.jsonl"
    )
    .to_string();
    let mut rules_path: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--rules" {
            rules_path = args.next();
        } else {
            set_path = a;
        }
    }
    let set = match std::fs::read_to_string(&set_path)
        .map_err(|e| e.to_string())
        .and_then(|t| parse_jsonl(&t))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{set_path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let triage = match rules_path {
        Some(p) => match std::fs::read_to_string(&p)
            .map_err(|e| e.to_string())
            .and_then(|t| Triage::from_toml(&t).map_err(|e| e.to_string()))
        {
            Ok(t) => std::sync::Arc::new(t),
            Err(e) => {
                eprintln!("{p}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => Triage::builtin(),
    };
    let eval = Evaluation::run(&triage, set);
    print!("{}", eval.report());
    ExitCode::SUCCESS
}
