//! Synonym groups, applied at query time so that editing the synonyms file never
//! requires a reindex.

use serde::Deserialize;

use crate::SearchError;

/// The dictionary compiled into the binary.
const BUILTIN_TOML: &str = include_str!("../../../knowledge-base/synonyms.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    group: Vec<Group>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    words: Vec<String>,
}

/// Groups of equivalent words or phrases (any language, pinyin included). A query word
/// matching one member is expanded to all members of its groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Synonyms {
    groups: Vec<Vec<String>>,
}

impl Synonyms {
    /// Parses the `knowledge-base/synonyms.toml` format:
    /// `[[group]]` tables each with `words = ["passport", "护照", "huzhao"]`.
    /// Rejects unknown keys and groups with fewer than two distinct words, because those
    /// are always editing mistakes that would otherwise silently do nothing.
    pub fn from_toml(s: &str) -> Result<Self, SearchError> {
        let file: File =
            toml::from_str(s).map_err(|e| SearchError::InvalidSynonyms(e.to_string()))?;
        let mut groups = Vec::with_capacity(file.group.len());
        for (i, g) in file.group.into_iter().enumerate() {
            let mut words: Vec<String> = Vec::new();
            for w in g.words {
                let w = w.trim().to_string();
                if !w.is_empty() && !words.iter().any(|x| x.to_lowercase() == w.to_lowercase()) {
                    words.push(w);
                }
            }
            if words.len() < 2 {
                return Err(SearchError::InvalidSynonyms(format!(
                    "group #{} needs at least two distinct non-empty words",
                    i + 1
                )));
            }
            groups.push(words);
        }
        Ok(Synonyms { groups })
    }

    /// No synonyms at all (plain segmentation, stemming, fuzzy and pinyin still apply).
    pub fn empty() -> Self {
        Synonyms::default()
    }

    /// The bilingual consular dictionary shipped inside the binary
    /// (`knowledge-base/synonyms.toml`), so cross-language search works with no file
    /// deployed; a deployment extends it with [`Synonyms::merge`].
    pub fn builtin() -> Self {
        static BUILTIN: std::sync::OnceLock<Synonyms> = std::sync::OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Synonyms::from_toml(BUILTIN_TOML)
                    .expect("the built-in synonyms file is valid (checked by a unit test)")
            })
            .clone()
    }

    /// These groups followed by those of `other` (a group already present, same
    /// words in any order and case, is not repeated). Groups are not fused when they
    /// share a word: a word may belong to several groups, and a query containing it
    /// reaches all of them, while the other words of each group stay apart.
    pub fn merge(&self, other: &Synonyms) -> Synonyms {
        fn key(g: &[String]) -> Vec<String> {
            let mut k: Vec<String> = g.iter().map(|w| w.to_lowercase()).collect();
            k.sort();
            k.dedup();
            k
        }
        let mut seen: std::collections::HashSet<Vec<String>> =
            self.groups.iter().map(|g| key(g)).collect();
        let mut groups = self.groups.clone();
        for g in &other.groups {
            if seen.insert(key(g)) {
                groups.push(g.clone());
            }
        }
        Synonyms { groups }
    }

    /// Builds synonyms from in-memory groups (handy for tests and programmatic config).
    pub fn from_groups<I, G, W>(groups: I) -> Self
    where
        I: IntoIterator<Item = G>,
        G: IntoIterator<Item = W>,
        W: Into<String>,
    {
        Synonyms {
            groups: groups
                .into_iter()
                .map(|g| g.into_iter().map(Into::into).collect::<Vec<String>>())
                .filter(|g| g.len() >= 2)
                .collect(),
        }
    }

    /// The groups, in file order.
    pub fn groups(&self) -> &[Vec<String>] {
        &self.groups
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_format() {
        let s = Synonyms::from_toml(
            r#"
[[group]]
words = ["passport", "护照", "huzhao"]
[[group]]
words = ["lost", "丢失", "遗失", "丢了", "missing"]
"#,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.groups()[0], ["passport", "护照", "huzhao"]);
        assert!(Synonyms::from_toml("").unwrap().is_empty());
    }

    #[test]
    fn builtin_dictionary_parses_and_merges() {
        let b = Synonyms::builtin();
        assert!(b.len() >= 40, "{}", b.len());
        // A group already there (other order and case) and a new one.
        let mut again: Vec<String> = b.groups()[0].iter().map(|w| w.to_uppercase()).collect();
        again.reverse();
        let extra = Synonyms::from_groups([again, vec!["wedding".into(), "婚礼".into()]]);
        let m = b.merge(&extra);
        // Only the new group is added.
        assert_eq!(m.len(), b.len() + 1);
        assert_eq!(m.groups().last().unwrap(), &["wedding", "婚礼"]);
        assert_eq!(Synonyms::empty().merge(&extra), extra);
        assert_eq!(m.merge(&b), m);
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "[[group]]\nwords = [\"only\"]",
            "[[group]]\nword = [\"a\", \"b\"]",
            "[[group]\nwords = [",
            "group = 3",
        ] {
            assert!(
                matches!(
                    Synonyms::from_toml(bad),
                    Err(SearchError::InvalidSynonyms(_))
                ),
                "{bad}"
            );
        }
    }
}
