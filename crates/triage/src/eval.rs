//! Measuring the rules against a labelled set of messages
//! (`tests/data/triage_messages.jsonl`), shared by the report example and the accuracy
//! test so that both print the same figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use crate::{Assessment, Category, Triage};

/// One line of the labelled set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledMessage {
    pub text: String,
    pub label: Category,
    #[serde(default)]
    pub locale: Option<String>,
    /// The kind of difficulty (`negation`, `fraud_script`, `no_keyword_emergency`, ...).
    pub case: String,
    /// `dev` (rules may be tuned on it) or `holdout` (never tuned on: it tells whether
    /// the rules generalise).
    pub split: String,
}

/// Parses JSON Lines; blank lines are skipped. Errors give the line number.
pub fn parse_jsonl(text: &str) -> Result<Vec<LabelledMessage>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let m: LabelledMessage =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(m);
    }
    Ok(out)
}

/// A confusion matrix, indexed `[label][predicted]` in `Category::ALL` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confusion(pub [[u32; 4]; 4]);

impl Confusion {
    pub fn add(&mut self, label: Category, predicted: Category) {
        self.0[label as usize][predicted as usize] += 1;
    }

    pub fn total(&self) -> u32 {
        self.0.iter().flatten().sum()
    }

    /// Share of messages labelled `c` that were predicted `c`; `None` without any.
    pub fn recall(&self, c: Category) -> Option<f64> {
        let row: u32 = self.0[c as usize].iter().sum();
        (row > 0).then(|| f64::from(self.0[c as usize][c as usize]) / f64::from(row))
    }

    /// Share of messages predicted `c` that are labelled `c`; `None` without any.
    pub fn precision(&self, c: Category) -> Option<f64> {
        let col: u32 = self.0.iter().map(|r| r[c as usize]).sum();
        (col > 0).then(|| f64::from(self.0[c as usize][c as usize]) / f64::from(col))
    }

    pub fn accuracy(&self) -> Option<f64> {
        let t = self.total();
        let ok: u32 = (0..4).map(|i| self.0[i][i]).sum();
        (t > 0).then(|| f64::from(ok) / f64::from(t))
    }
}

/// Every message of a set with the classifier's answer.
pub struct Evaluation {
    pub items: Vec<(LabelledMessage, Assessment)>,
}

impl Evaluation {
    pub fn run(triage: &Triage, set: Vec<LabelledMessage>) -> Evaluation {
        let items = set
            .into_iter()
            .map(|m| {
                let a = triage.classify(&m.text, m.locale.as_deref());
                (m, a)
            })
            .collect();
        Evaluation { items }
    }

    /// Confusion over the messages `keep` accepts.
    pub fn confusion(&self, keep: impl Fn(&LabelledMessage) -> bool) -> Confusion {
        let mut c = Confusion::default();
        for (m, a) in &self.items {
            if keep(m) {
                c.add(m.label, a.category);
            }
        }
        c
    }

    /// The full text report: per split and overall, per class, per case, the confusion
    /// matrix and every miss with its reasons.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let all = self.confusion(|_| true);
        let _ = writeln!(out, "== Triage on {} labelled messages ==", all.total());
        let mut splits: Vec<&str> = self.items.iter().map(|(m, _)| m.split.as_str()).collect();
        splits.sort_unstable();
        splits.dedup();
        section(&mut out, "overall", &all);
        for sp in &splits {
            let c = self.confusion(|m| m.split == *sp);
            section(&mut out, sp, &c);
        }

        let _ = writeln!(out, "\n-- per case (correct/total; split dev | holdout) --");
        let mut cases: BTreeMap<(&str, Category), [(u32, u32); 2]> = BTreeMap::new();
        for (m, a) in &self.items {
            let slot = &mut cases.entry((m.case.as_str(), m.label)).or_default()
                [usize::from(m.split == "holdout")];
            slot.1 += 1;
            if a.category == m.label {
                slot.0 += 1;
            }
        }
        for ((case, label), [d, h]) in &cases {
            let _ = writeln!(
                out,
                "  {:<24} {:<9} {:>3}/{:<3} | {:>3}/{:<3}{}",
                case,
                label.as_str(),
                d.0,
                d.1,
                h.0,
                h.1,
                if d.0 + h.0 < d.1 + h.1 { "  <" } else { "" }
            );
        }

        let misses: Vec<&(LabelledMessage, Assessment)> = self
            .items
            .iter()
            .filter(|(m, a)| m.label != a.category)
            .collect();
        let _ = writeln!(out, "\n-- misses ({}) --", misses.len());
        for (m, a) in misses {
            let _ = writeln!(
                out,
                "[{}] {} → {} ({:.2})  case={}  {}",
                m.split,
                m.label.as_str(),
                a.category.as_str(),
                a.score,
                m.case,
                m.text
            );
            if a.reasons.is_empty() {
                let _ = writeln!(out, "      (no signal found)");
            }
            for r in &a.reasons {
                let _ = writeln!(out, "      {:<16} {:<24} {}", r.kind, r.matched, r.detail);
            }
        }
        out
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "   -  ".to_string(), |v| format!("{:6.3}", v))
}

fn section(out: &mut String, name: &str, c: &Confusion) {
    let _ = writeln!(
        out,
        "\n-- {name}: {} messages, accuracy {} --",
        c.total(),
        pct(c.accuracy())
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>7} {:>9} {:>8}",
        "class", "recall", "precision", "support"
    );
    for cat in Category::ALL.iter().rev() {
        let support: u32 = c.0[*cat as usize].iter().sum();
        let _ = writeln!(
            out,
            "  {:<10} {:>7} {:>9} {:>8}",
            cat.as_str(),
            pct(c.recall(*cat)),
            pct(c.precision(*cat)),
            support
        );
    }
    let _ = writeln!(out, "  confusion (rows: label, columns: predicted)");
    let _ = write!(out, "  {:<10}", "");
    for cat in Category::ALL.iter().rev() {
        let _ = write!(out, " {:>9}", cat.as_str());
    }
    let _ = writeln!(out);
    for l in Category::ALL.iter().rev() {
        let _ = write!(out, "  {:<10}", l.as_str());
        for p in Category::ALL.iter().rev() {
            let _ = write!(out, " {:>9}", c.0[*l as usize][*p as usize]);
        }
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_figures() {
        let mut c = Confusion::default();
        c.add(Category::Emergency, Category::Emergency);
        c.add(Category::Emergency, Category::Urgent);
        c.add(Category::Routine, Category::Emergency);
        c.add(Category::Routine, Category::Routine);
        assert_eq!(c.recall(Category::Emergency), Some(0.5));
        assert_eq!(c.precision(Category::Emergency), Some(0.5));
        assert_eq!(c.recall(Category::Fraud), None);
        assert_eq!(c.accuracy(), Some(0.5));
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let ok = r#"{"text":"a","label":"routine","locale":"en","case":"x","split":"dev"}"#;
        assert_eq!(parse_jsonl(&format!("{ok}\n\n{ok}\n")).unwrap().len(), 2);
        let err = parse_jsonl(&format!("{ok}\n{{\"text\":1}}\n")).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
