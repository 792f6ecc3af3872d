//! Emergency triage of citizen messages, offline.
//!
//! Every message a citizen sends to a mission is sorted, before it is acknowledged,
//! into `emergency`, `fraud`, `urgent` or `routine`, with a confidence and the reasons
//! a duty officer needs to trust or overrule it. Nothing leaves the process: the rules
//! are a reviewable TOML file (`config/triage.toml`), compiled once into automata.
//!
//! ```
//! use lingshi_triage::{Category, Triage};
//! let triage = Triage::builtin();
//! let a = triage.classify("救命！有人拿刀抢劫，他还在附近", Some("zh-CN"));
//! assert_eq!(a.category, Category::Emergency);
//! let a = triage.classify("如果遇到抢劫怎么办", Some("zh-CN"));
//! assert_eq!(a.category, Category::Routine);
//! ```

mod engine;
pub mod eval;
mod normalise;
mod rules;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

pub use rules::RulesError;

/// The rules shipped in the binary; the server may load an edited copy at run time.
pub const BUILTIN_RULES: &str = include_str!("../../../config/triage.toml");

/// What staff must do with a message, in rising order of gravity (so `max` picks the
/// gravest of several assessments).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Questions and requests that can wait for the normal queue.
    Routine,
    /// Needs action soon (lost documents before a flight, detention, stranded), but no
    /// one is in danger now.
    Urgent,
    /// A scam is being attempted or has succeeded: answered with anti-fraud guidance,
    /// never escalated as a rescue.
    Fraud,
    /// Someone may be in danger now: escalated to the duty officer and the hotline.
    Emergency,
}

impl Category {
    /// Every category, from routine to emergency.
    pub const ALL: [Category; 4] = [
        Category::Routine,
        Category::Urgent,
        Category::Fraud,
        Category::Emergency,
    ];

    /// The wire name, as in the API and the rules file.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Routine => "routine",
            Category::Urgent => "urgent",
            Category::Fraud => "fraud",
            Category::Emergency => "emergency",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned for a name that is not one of the four categories.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown triage category \"{0}\" (expected routine, urgent, fraud or emergency)")]
pub struct UnknownCategory(pub String);

impl FromStr for Category {
    type Err = UnknownCategory;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "routine" => Ok(Category::Routine),
            "urgent" => Ok(Category::Urgent),
            "fraud" => Ok(Category::Fraud),
            "emergency" => Ok(Category::Emergency),
            _ => Err(UnknownCategory(s.to_string())),
        }
    }
}

/// One piece of evidence, worded for a duty officer deciding whether to trust the
/// category: what kind of signal, the citizen's own words, and a short explanation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    /// Signal or modifier kind from the rules file (`danger`, `negation`, `fraud`, ...).
    pub kind: String,
    /// The span of the message as the citizen wrote it (at most 60 bytes).
    pub matched: String,
    /// A short English sentence.
    pub detail: String,
}

/// The classifier's answer for one message.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Assessment {
    pub category: Category,
    /// Confidence in `category`, 0..=1: 0.5 at the threshold, rising with the evidence
    /// and lowered when another category also fired.
    pub score: f32,
    /// Strongest first; the evidence for the chosen category leads.
    pub reasons: Vec<Reason>,
}

/// A compiled rule set. Immutable after construction, so one instance is shared by all
/// connections behind an `Arc`.
pub struct Triage {
    engine: engine::Engine,
}

impl fmt::Debug for Triage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Triage").finish_non_exhaustive()
    }
}

impl Triage {
    /// The rules shipped with the binary, compiled on first use and shared afterwards.
    pub fn builtin() -> Arc<Triage> {
        static BUILTIN: OnceLock<Arc<Triage>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                // The shipped file is checked by this crate's tests; a failure here is a
                // build defect, not an input error.
                Arc::new(Triage::from_toml(BUILTIN_RULES).expect("config/triage.toml is valid"))
            })
            .clone()
    }

    /// Compiles an edited rules file (the server's run-time override). Errors name the
    /// block and key to fix.
    pub fn from_toml(text: &str) -> Result<Triage, RulesError> {
        Ok(Triage {
            engine: engine::Engine::compile(text)?,
        })
    }

    /// Classifies one message. Never panics and never fails: any string is a valid
    /// message. The locale is accepted for future per-language rules; today both
    /// languages are always checked, because citizens mix them whatever their setting.
    pub fn classify(&self, text: &str, _locale: Option<&str>) -> Assessment {
        self.engine.classify(text)
    }

    /// Loads the segmentation dictionary now rather than on the first Chinese message
    /// that needs it (about a third of a second), e.g. at server start.
    pub fn warm_up(&self) {
        engine::warm_up();
    }

    /// The text the rules are matched against (folded, rewritten, stemmed): lets an
    /// editor see why a term did or did not match.
    pub fn normalised(&self, text: &str) -> String {
        self.engine.normalise(text).text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert!("panic".parse::<Category>().is_err());
        assert!(Category::Emergency > Category::Fraud);
        assert!(Category::Urgent > Category::Routine);
    }

    #[test]
    fn triage_is_shareable() {
        fn check<T: Send + Sync>() {}
        check::<Triage>();
        let a = Triage::builtin();
        let b = Triage::builtin();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
