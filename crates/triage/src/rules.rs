//! The rules file as written by editors (`config/triage.toml`). Everything the engine
//! knows about language lives here; the engine only applies it. See the file itself
//! and the crate README for the meaning of every key.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Category;

/// Why a rules file was refused. Every message names the place (`signal #3 "danger"`,
/// `normalise.pinyin`) so an editor can find the line to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    /// The file is not TOML, or a key is unknown, missing or of the wrong type. The
    /// message from the TOML parser carries the line, column and key.
    #[error("rules file: {0}")]
    Syntax(String),
    /// The file parses but a rule cannot be used as written.
    #[error("rules file, {place}: {message}")]
    Invalid { place: String, message: String },
}

impl RulesError {
    pub(crate) fn invalid(place: impl Into<String>, message: impl Into<String>) -> Self {
        RulesError::Invalid {
            place: place.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulesFile {
    pub version: u32,
    pub decision: DecisionCfg,
    #[serde(default)]
    pub normalise: NormaliseCfg,
    #[serde(default)]
    pub segmentation: SegmentationCfg,
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub modifier: Vec<ModifierCfg>,
    #[serde(default)]
    pub signal: Vec<SignalCfg>,
    #[serde(default)]
    pub pattern: Vec<PatternCfg>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionCfg {
    pub emergency: f32,
    pub fraud: f32,
    pub urgent: f32,
    #[serde(default = "one")]
    pub fraud_over_emergency: f32,
    #[serde(default = "default_boost_needs")]
    pub boost_needs: f32,
    #[serde(default = "default_max_reasons")]
    pub max_reasons: usize,
}

fn one() -> f32 {
    1.0
}
fn default_boost_needs() -> f32 {
    0.3
}
fn default_max_reasons() -> usize {
    12
}
fn default_typo_min_len() -> usize {
    6
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NormaliseCfg {
    /// Meaning → the ways people mistype it.
    #[serde(default)]
    pub typos: BTreeMap<String, Vec<String>>,
    /// Chinese word → typed pinyin spellings.
    #[serde(default)]
    pub pinyin: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub stem_exceptions: Vec<String>,
    #[serde(default)]
    pub not_typos: Vec<String>,
    #[serde(default = "default_typo_min_len")]
    pub typo_min_len: usize,
}

impl Default for NormaliseCfg {
    fn default() -> Self {
        NormaliseCfg {
            typos: BTreeMap::new(),
            pinyin: BTreeMap::new(),
            stem_exceptions: Vec::new(),
            not_typos: Vec::new(),
            typo_min_len: default_typo_min_len(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SegmentationCfg {
    #[serde(default)]
    pub sentence_breaks: Vec<String>,
    #[serde(default)]
    pub clause_breaks: Vec<String>,
}

/// Where a modifier's marker must stand relative to the signal it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Position {
    Before,
    After,
    Either,
    Overlap,
}

/// The stretch of text a marker and a signal must share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scope {
    Clause,
    Sentence,
    Message,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModifierCfg {
    pub kind: String,
    pub detail: String,
    pub position: Position,
    pub scope: Scope,
    #[serde(default)]
    pub window: Option<usize>,
    pub factor: f32,
    pub urgent_factor: f32,
    #[serde(default)]
    pub requires_after: Vec<String>,
    #[serde(default)]
    pub not_part_of: Vec<String>,
    #[serde(default)]
    pub not_if_followed_by: Vec<String>,
    #[serde(default)]
    pub cancelled_by: Vec<String>,
    pub terms: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignalCfg {
    pub kind: String,
    pub detail: String,
    pub category: Category,
    pub weight: f32,
    #[serde(default)]
    pub urgent: f32,
    #[serde(default)]
    pub modifiers: Vec<String>,
    #[serde(default)]
    pub boost: bool,
    #[serde(default)]
    pub whole_word: bool,
    pub terms: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatternCfg {
    pub kind: String,
    pub detail: String,
    pub category: Category,
    pub weight: f32,
    #[serde(default)]
    pub urgent: f32,
    #[serde(default)]
    pub modifiers: Vec<String>,
    pub within: Scope,
    pub all: Vec<Vec<String>>,
}

impl RulesFile {
    pub fn parse(text: &str) -> Result<Self, RulesError> {
        let file: RulesFile =
            toml::from_str(text).map_err(|e| RulesError::Syntax(e.to_string()))?;
        if file.version != 1 {
            return Err(RulesError::invalid(
                "version",
                format!("unsupported version {}, expected 1", file.version),
            ));
        }
        let d = &file.decision;
        for (k, v) in [
            ("decision.emergency", d.emergency),
            ("decision.fraud", d.fraud),
            ("decision.urgent", d.urgent),
            ("decision.fraud_over_emergency", d.fraud_over_emergency),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 100.0) {
                return Err(RulesError::invalid(k, "must be a number above 0"));
            }
        }
        if !(d.boost_needs.is_finite() && d.boost_needs >= 0.0) {
            return Err(RulesError::invalid(
                "decision.boost_needs",
                "must be 0 or more",
            ));
        }
        if file.normalise.typo_min_len < 4 {
            return Err(RulesError::invalid(
                "normalise.typo_min_len",
                "must be at least 4 (shorter words have too many one-edit neighbours)",
            ));
        }
        Ok(file)
    }

    /// Expands `@name` references to `[lists]` entries.
    pub fn expand(&self, place: &str, items: &[String]) -> Result<Vec<String>, RulesError> {
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            if let Some(name) = it.strip_prefix('@') {
                let list = self.lists.get(name).ok_or_else(|| {
                    RulesError::invalid(
                        place,
                        format!("unknown list \"@{name}\" (no such key in [lists])"),
                    )
                })?;
                for t in list {
                    if t.starts_with('@') {
                        return Err(RulesError::invalid(
                            format!("lists.{name}"),
                            format!("\"{t}\": a list cannot refer to another list"),
                        ));
                    }
                    out.push(t.clone());
                }
            } else {
                out.push(it.clone());
            }
        }
        Ok(out)
    }
}

pub(crate) fn check_weight(place: &str, key: &str, v: f32) -> Result<(), RulesError> {
    if v.is_finite() && (0.0..=10.0).contains(&v) {
        Ok(())
    } else {
        Err(RulesError::invalid(
            place,
            format!("{key} = {v} is outside 0..=10"),
        ))
    }
}

pub(crate) fn check_factor(place: &str, key: &str, v: f32) -> Result<(), RulesError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(RulesError::invalid(
            place,
            format!("{key} = {v} is outside 0..=1"),
        ))
    }
}
