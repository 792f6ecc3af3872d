//! Turns user text into a tantivy query programmatically (never via the query parser,
//! so tantivy syntax in user input is just text) and into highlighting rules.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query as TQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::Term;
use tantivy_jieba::jieba_rs::Jieba;

use crate::analysis::{
    analyze, fuzzy_distance, is_han, is_pinyin_syllable, is_pinyin_word, is_stopword,
    joined_pinyin, u_variants, word_analyzer, Segmenter, ZH_STOPWORDS,
};
use crate::Synonyms;

/// Only this much of the query text is analysed: nobody types more into a helpdesk
/// search box, and it bounds the work hostile input can cause.
const MAX_QUERY_CHARS: usize = 256;
/// At most this many query words are used.
const MAX_QUERY_TOKENS: usize = 24;

// Field weights: title > tags > summary > body; grams and pinyin are recall helpers.
const W_TITLE: f32 = 3.0;
const W_TAGS: f32 = 2.0;
const W_SUMMARY: f32 = 1.5;
const W_BODY: f32 = 1.0;
const W_TITLE_GRAM: f32 = 1.5;
const W_TEXT_GRAM: f32 = 0.5;
const W_PINYIN: f32 = 1.0;
/// Fuzzy matches score a constant (tantivy's automaton scorer) of this times the field
/// weight, well below a BM25 exact match, so exact matches rank first.
const W_FUZZY: f32 = 0.4;
/// Synonym alternatives score a little below what the user literally typed.
const W_SYNONYM: f32 = 0.8;
/// Dictionary words inside a longer query word (`电话` in `打电话`) stand in for it
/// at this weight.
const W_SUBWORD: f32 = 0.6;
/// A concept found in more than this share of the documents does not count towards
/// the number of concepts a document must match: it is a context word (`使馆`,
/// `passport` in a passport-heavy knowledge base) that cannot tell articles apart.
const COMMON_SHARE: f64 = 0.4;

/// The searchable fields a query touches.
#[derive(Clone, Copy)]
pub(crate) struct TextFields {
    pub title: Field,
    pub summary: Field,
    pub body: Field,
    pub tags: Field,
    pub title_gram: Field,
    pub text_gram: Field,
    pub pinyin_title: Field,
    pub pinyin_summary: Field,
}

/// One analysed query word.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QTok {
    /// Indexed form (lowercased, stemmed).
    term: String,
    /// Lowercased text as typed (unstemmed): drives fuzzy distance and pinyin.
    raw: String,
    /// All Han characters.
    han: bool,
}

/// One way to express a concept: a sequence of words that must all match.
#[derive(Debug)]
struct Form {
    toks: Vec<QTok>,
    weight: f32,
    fuzzy: bool,
    /// The user is still typing this word: also match words starting with it.
    prefix: bool,
}

/// A unit of meaning in the query (a word, or a phrase covered by a synonym group);
/// the final query requires a share of concepts to match.
#[derive(Debug, Default)]
struct Concept {
    forms: Vec<Form>,
    pinyin: Vec<(String, f32)>,
    stop: bool,
}

/// What the snippet generator should mark.
#[derive(Debug, Default)]
pub(crate) struct Highlight {
    /// Indexed word terms (stemmed Latin, jieba words).
    pub exact: HashSet<String>,
    /// Stemmed Latin terms with their allowed edit distance.
    pub fuzzy: Vec<(String, u8)>,
    /// Prefixes of a word still being typed (lowercase, unstemmed).
    pub prefix: Vec<String>,
    /// Han strings to mark wherever they occur.
    pub han: Vec<String>,
    /// Pinyin forms: a Han word whose joined pinyin is one of these is marked.
    pub pinyin: HashSet<String>,
}

/// A planned query.
pub(crate) struct Plan {
    concepts: Vec<Concept>,
}

/// Synonym words pre-analysed with the query analyzer.
struct PreparedSynonyms {
    /// Every member of every group, analysed.
    groups: Vec<Vec<Vec<QTok>>>,
    /// First term → (term sequence, group index).
    by_first: HashMap<String, Vec<(Vec<String>, usize)>>,
}

/// Query planner: owns the query-side analyzer (jieba with synonym words added) and
/// the prepared synonyms. Cheap to share; clones the analyzer per query.
pub(crate) struct Planner {
    analyzer: TextAnalyzer,
    jieba: Arc<Jieba>,
    syn: PreparedSynonyms,
}

fn to_qtoks(analyzer: &mut TextAnalyzer, text: &str) -> Vec<QTok> {
    analyze(analyzer, text)
        .into_iter()
        .map(|t| {
            let raw = text[t.offset_from..t.offset_to].to_lowercase();
            let han = raw.chars().all(is_han);
            QTok {
                term: t.text,
                raw,
                han,
            }
        })
        .collect()
}

impl Planner {
    pub(crate) fn new(synonyms: &Synonyms) -> Self {
        // A private dictionary (loaded once per engine) so synonym phrases and question
        // frames stay whole.
        let mut jieba = Jieba::new();
        for w in ZH_STOPWORDS {
            if w.chars().count() >= 2 && w.chars().all(is_han) {
                jieba.add_word(w, Some(20_000), None);
            }
        }
        for g in synonyms.groups() {
            for w in g {
                let w = crate::analysis::to_simplified(w);
                if w.chars().count() >= 2 && w.chars().all(is_han) {
                    // High frequency so the phrase wins segmentation in context.
                    jieba.add_word(&w, Some(100_000), None);
                }
            }
        }
        let jieba = Arc::new(jieba);
        let mut analyzer = word_analyzer(Segmenter::Custom(jieba.clone()));
        let mut groups = Vec::new();
        let mut by_first: HashMap<String, Vec<(Vec<String>, usize)>> = HashMap::new();
        for (gi, g) in synonyms.groups().iter().enumerate() {
            let mut members = Vec::new();
            for w in g {
                let toks = to_qtoks(&mut analyzer, w);
                if toks.is_empty() {
                    continue;
                }
                let seq: Vec<String> = toks.iter().map(|t| t.term.clone()).collect();
                let entry = by_first.entry(seq[0].clone()).or_default();
                if !entry.iter().any(|(s, g2)| *s == seq && *g2 == gi) {
                    entry.push((seq, gi));
                }
                members.push(toks);
            }
            groups.push(members);
        }
        // The pinyin of each Chinese member is a key of its group too, so `yanglaojin`
        // reaches 养老金 and, through it, `pension`.
        for (gi, members) in groups.iter().enumerate() {
            for m in members {
                if m.len() != 1 || !m[0].han || m[0].term.chars().count() < 2 {
                    continue;
                }
                for p in u_variants(&joined_pinyin(&m[0].term)) {
                    if p.len() < 4 {
                        continue;
                    }
                    let entry = by_first.entry(p.clone()).or_default();
                    if !entry.iter().any(|(s, g2)| s.len() == 1 && *g2 == gi) {
                        entry.push((vec![p], gi));
                    }
                }
            }
        }
        Planner {
            analyzer,
            jieba,
            syn: PreparedSynonyms { groups, by_first },
        }
    }

    /// Groups that have `term` as a whole one-word member (or pinyin key).
    fn groups_of_word(&self, term: &str) -> Vec<usize> {
        self.syn
            .by_first
            .get(term)
            .map(|v| {
                v.iter()
                    .filter(|(seq, _)| seq.len() == 1)
                    .map(|(_, g)| *g)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Dictionary words inside a long Han query word (`电话` in `打电话`, `报警` and
    /// `电话` in `报警电话`), longest first, question frames excluded.
    fn subwords(&self, word: &str) -> Vec<String> {
        let chars: Vec<char> = word.chars().collect();
        let n = chars.len();
        let mut out: Vec<String> = Vec::new();
        if n < 3 {
            return out;
        }
        for len in (2..n.min(5)).rev() {
            for start in 0..=n - len {
                let w: String = chars[start..start + len].iter().collect();
                if self.jieba.has_word(&w) && !is_stopword(&w) && !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        out
    }

    /// Longest synonym phrase starting at `toks[i]`: its length and groups.
    fn synonym_at(&self, toks: &[QTok], i: usize) -> Option<(usize, Vec<usize>)> {
        let cands = self.syn.by_first.get(&toks[i].term)?;
        let mut best: Option<(usize, Vec<usize>)> = None;
        for (seq, gi) in cands {
            let l = seq.len();
            if i + l > toks.len() || toks[i..i + l].iter().zip(seq).any(|(t, s)| t.term != *s) {
                continue;
            }
            match &mut best {
                Some((bl, gs)) if *bl == l => gs.push(*gi),
                Some((bl, _)) if *bl > l => {}
                _ => best = Some((l, vec![*gi])),
            }
        }
        best
    }

    fn synonym_forms(&self, groups: &[usize], main: &[QTok], weight: f32) -> Vec<Form> {
        let main_terms: Vec<&str> = main.iter().map(|t| t.term.as_str()).collect();
        let mut seen: Vec<Vec<String>> = Vec::new();
        let mut out = Vec::new();
        for &gi in groups {
            for m in &self.syn.groups[gi] {
                let terms: Vec<String> = m.iter().map(|t| t.term.clone()).collect();
                if terms
                    .iter()
                    .map(String::as_str)
                    .eq(main_terms.iter().copied())
                    || seen.contains(&terms)
                {
                    continue;
                }
                seen.push(terms);
                out.push(Form {
                    toks: m.clone(),
                    weight,
                    fuzzy: false,
                    prefix: false,
                });
            }
        }
        out
    }

    /// Analyses the query text into concepts.
    pub(crate) fn plan(&self, text: &str) -> Plan {
        let end = text
            .char_indices()
            .nth(MAX_QUERY_CHARS)
            .map_or(text.len(), |(i, _)| i);
        let mut analyzer = self.analyzer.clone();
        let mut toks = to_qtoks(&mut analyzer, &text[..end]);
        toks.truncate(MAX_QUERY_TOKENS);

        let mut concepts: Vec<Concept> = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let (len, groups) = self.synonym_at(&toks, i).unwrap_or((1, Vec::new()));
            let main = toks[i..i + len].to_vec();
            let single_ascii = len == 1 && main[0].raw.bytes().all(|b| b.is_ascii_alphabetic());
            let key = if main[0].han {
                &main[0].term
            } else {
                &main[0].raw
            };
            let mut c = Concept {
                stop: groups.is_empty() && is_stopword(key),
                ..Concept::default()
            };
            if single_ascii && is_pinyin_word(&main[0].raw) {
                // A lone syllable ("man", "long") is more likely an English word than
                // pinyin, so it weighs little; a multi-syllable word ("huzhao") is pinyin.
                let w = if is_pinyin_syllable(&main[0].raw) {
                    0.3
                } else {
                    1.0
                };
                c.pinyin.push((main[0].raw.clone(), w));
            }
            let mut syn_forms = self.synonym_forms(&groups, &main, W_SYNONYM);
            if len == 1 && main[0].han && !c.stop {
                // Words inside a long word, and their synonyms, stand in for it.
                for sub in self.subwords(&main[0].term) {
                    let tok = QTok {
                        term: sub.clone(),
                        raw: sub.clone(),
                        han: true,
                    };
                    let sub_groups = self.groups_of_word(&sub);
                    let mut more = self.synonym_forms(
                        &sub_groups,
                        std::slice::from_ref(&tok),
                        W_SUBWORD * W_SYNONYM,
                    );
                    syn_forms.push(Form {
                        toks: vec![tok],
                        weight: W_SUBWORD,
                        fuzzy: false,
                        prefix: false,
                    });
                    syn_forms.append(&mut more);
                }
            }
            c.forms.push(Form {
                toks: main,
                weight: 1.0,
                fuzzy: len == 1,
                prefix: false,
            });
            // Each alternative once, at its best weight.
            for f in syn_forms {
                let same = |g: &Form| {
                    g.toks.len() == f.toks.len()
                        && g.toks.iter().zip(&f.toks).all(|(a, b)| a.term == b.term)
                };
                if !c.forms.iter().any(same) {
                    c.forms.push(f);
                }
            }
            concepts.push(c);
            i += len;
        }

        // "hu zhao" → also try the joined pinyin word "huzhao", and "haiya renzheng" →
        // "haiyarenzheng" (with their synonyms).
        for span in [3usize, 2] {
            if concepts.len() < span {
                continue;
            }
            for s in 0..=concepts.len() - span {
                let parts: Option<Vec<&str>> = concepts[s..s + span]
                    .iter()
                    .map(|c| match c.forms.first() {
                        Some(f)
                            if !c.stop && f.toks.len() == 1 && is_pinyin_word(&f.toks[0].raw) =>
                        {
                            Some(f.toks[0].raw.as_str())
                        }
                        _ => None,
                    })
                    .collect();
                let Some(parts) = parts else { continue };
                let joined = parts.concat();
                if joined.len() > 30 {
                    continue;
                }
                let groups = self.groups_of_word(&joined);
                let joined_tok = QTok {
                    term: joined.clone(),
                    raw: joined.clone(),
                    han: false,
                };
                for c in &mut concepts[s..s + span] {
                    c.pinyin.push((joined.clone(), 1.5));
                    let extra = self.synonym_forms(&groups, std::slice::from_ref(&joined_tok), 0.7);
                    c.forms.extend(extra);
                }
            }
        }

        // Search-as-you-type: a query ending inside a Latin word also matches words that
        // start with it ("passp" → passport).
        let typing = text[..end]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphabetic());
        if typing {
            if let Some(form) = concepts.last_mut().and_then(|c| c.forms.first_mut()) {
                let t = &form.toks[0];
                let n = t.raw.len();
                form.prefix = form.toks.len() == 1
                    && (3..=16).contains(&n)
                    && t.raw.bytes().all(|b| b.is_ascii_alphabetic())
                    && !is_stopword(&t.raw);
            }
        }

        if concepts.iter().all(|c| c.stop) {
            for c in &mut concepts {
                c.stop = false;
            }
        }
        concepts.retain(|c| !c.stop);
        Plan { concepts }
    }
}

fn boosted(q: Box<dyn TQuery>, w: f32) -> Box<dyn TQuery> {
    if (w - 1.0).abs() < f32::EPSILON {
        q
    } else {
        Box::new(BoostQuery::new(q, w))
    }
}

fn term_q(field: Field, text: &str, w: f32) -> Box<dyn TQuery> {
    boosted(
        Box::new(TermQuery::new(
            Term::from_field_text(field, text),
            IndexRecordOption::WithFreqs,
        )),
        w,
    )
}

fn should(clauses: Vec<Box<dyn TQuery>>) -> Box<dyn TQuery> {
    if clauses.len() == 1 {
        return clauses.into_iter().next().expect("one clause");
    }
    Box::new(BooleanQuery::new(
        clauses.into_iter().map(|q| (Occur::Should, q)).collect(),
    ))
}

fn must(clauses: Vec<Box<dyn TQuery>>) -> Box<dyn TQuery> {
    if clauses.len() == 1 {
        return clauses.into_iter().next().expect("one clause");
    }
    Box::new(BooleanQuery::new(
        clauses.into_iter().map(|q| (Occur::Must, q)).collect(),
    ))
}

/// Han unigram (single character) or the bigrams covering a longer word.
fn grams(word: &str) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() == 1 {
        return vec![word.to_string()];
    }
    chars.windows(2).map(|w| w.iter().collect()).collect()
}

fn token_query(f: &TextFields, t: &QTok, w: f32, fuzzy: bool, prefix: bool) -> Box<dyn TQuery> {
    let mut clauses = vec![
        term_q(f.title, &t.term, w * W_TITLE),
        term_q(f.tags, &t.term, w * W_TAGS),
        term_q(f.summary, &t.term, w * W_SUMMARY),
        term_q(f.body, &t.term, w * W_BODY),
    ];
    if t.han {
        let g = grams(&t.term);
        clauses.push(boosted(
            must(g.iter().map(|x| term_q(f.title_gram, x, 1.0)).collect()),
            w * W_TITLE_GRAM,
        ));
        clauses.push(boosted(
            must(g.iter().map(|x| term_q(f.text_gram, x, 1.0)).collect()),
            w * W_TEXT_GRAM,
        ));
    }
    let dist = if fuzzy { fuzzy_distance(&t.raw) } else { 0 };
    if dist > 0 && t.term.chars().count() >= 4 {
        for (field, fw) in [(f.title, W_TITLE), (f.summary, W_SUMMARY), (f.body, W_BODY)] {
            clauses.push(Box::new(BoostQuery::new(
                Box::new(FuzzyTermQuery::new(
                    Term::from_field_text(field, &t.term),
                    dist,
                    true,
                )),
                w * fw * W_FUZZY,
            )));
        }
    }
    if prefix {
        // Prefix expansion is limited to the short fields: on bodies a three-letter
        // prefix would expand to a large part of the vocabulary.
        for (field, fw) in [(f.title, W_TITLE), (f.tags, W_TAGS), (f.summary, W_SUMMARY)] {
            clauses.push(Box::new(BoostQuery::new(
                Box::new(FuzzyTermQuery::new_prefix(
                    Term::from_field_text(field, &t.term),
                    0,
                    true,
                )),
                w * fw * W_FUZZY,
            )));
        }
    }
    should(clauses)
}

impl Plan {
    /// The script the user wrote in: Han only → "zh", Latin words that are not pinyin →
    /// "en"; used to prefer articles in that language when no locale filter is given.
    pub(crate) fn script_locale(&self) -> Option<&'static str> {
        let toks = self
            .concepts
            .iter()
            .filter_map(|c| c.forms.first())
            .flat_map(|f| &f.toks);
        let (mut han, mut latin) = (false, false);
        for t in toks {
            if t.han {
                han = true;
            } else if t.raw.bytes().any(|b| b.is_ascii_alphabetic()) && !is_pinyin_word(&t.raw) {
                latin = true;
            }
        }
        match (han, latin) {
            (true, false) => Some("zh"),
            (false, true) => Some("en"),
            _ => None,
        }
    }

    /// The query reduced to its meaningful words, separated by spaces (question frames
    /// and filler dropped, Han text in Simplified characters), for backends that take
    /// plain query text.
    pub(crate) fn plain_text(&self) -> String {
        let mut words: Vec<&str> = Vec::new();
        for c in &self.concepts {
            if let Some(f) = c.forms.first() {
                for t in &f.toks {
                    words.push(if t.han { &t.term } else { &t.raw });
                }
            }
        }
        words.join(" ")
    }

    /// True when nothing searchable is left (empty, whitespace or punctuation only).
    pub(crate) fn is_empty(&self) -> bool {
        self.concepts.is_empty()
    }

    /// Roughly how many documents a concept matches (the most of any of its forms),
    /// from term statistics alone; `None` when only fuzzy or prefix matching could
    /// find it, which statistics cannot tell.
    fn concept_df(c: &Concept, f: &TextFields, df: &dyn Fn(&Term) -> u64) -> Option<u64> {
        let mut best = 0u64;
        let mut unknown = false;
        for form in c.forms.iter().take(12) {
            let mut form_df = u64::MAX;
            for t in &form.toks {
                let mut d = df(&Term::from_field_text(f.body, &t.term))
                    .max(df(&Term::from_field_text(f.title, &t.term)));
                if t.han {
                    // All the word's bigrams in a document (an upper bound on it
                    // containing the word, which is what the gram fields match).
                    let g = grams(&t.term)
                        .iter()
                        .map(|x| df(&Term::from_field_text(f.text_gram, x)))
                        .min()
                        .unwrap_or(0);
                    d = d.max(g);
                }
                form_df = form_df.min(d);
            }
            if form_df == u64::MAX {
                form_df = 0;
            }
            if form.prefix || (form.fuzzy && form.toks.iter().any(|t| fuzzy_distance(&t.raw) > 0)) {
                unknown = true;
            }
            best = best.max(form_df);
        }
        for (p, _) in &c.pinyin {
            best = best
                .max(df(&Term::from_field_text(f.pinyin_title, p)))
                .max(df(&Term::from_field_text(f.pinyin_summary, p)));
        }
        if best == 0 && unknown {
            None
        } else {
            Some(best)
        }
    }

    /// The text part of the query and how many concepts it requires. Each concept is
    /// a disjunction of its forms over all fields. A document must match a third of
    /// the *distinctive* concepts (at least one): concepts no document contains, and
    /// concepts most documents contain, do not count (unless all are common), so one
    /// rare word can carry a long question and context words cannot drown it; BM25
    /// (whose IDF weighs each term by its rarity) ranks documents that match more of
    /// them higher. `relax` requires a single concept: the fallback when the strict
    /// query finds nothing.
    pub(crate) fn to_query(
        &self,
        f: &TextFields,
        df: &dyn Fn(&Term) -> u64,
        num_docs: u64,
        relax: bool,
    ) -> (Box<dyn TQuery>, usize) {
        let mut concept_qs: Vec<(Occur, Box<dyn TQuery>)> = Vec::new();
        let (mut distinctive, mut matchable) = (0usize, 0usize);
        for c in &self.concepts {
            let mut alts: Vec<Box<dyn TQuery>> = Vec::new();
            for form in &c.forms {
                // A multi-word form shares its weight among its words, so that a long
                // synonym phrase does not outweigh the single word the user typed.
                let w = form.weight / form.toks.len() as f32;
                let parts: Vec<Box<dyn TQuery>> = form
                    .toks
                    .iter()
                    .map(|t| token_query(f, t, w, form.fuzzy, form.prefix))
                    .collect();
                alts.push(must(parts));
            }
            for (p, w) in &c.pinyin {
                alts.push(term_q(f.pinyin_title, p, w * W_PINYIN * W_TITLE));
                alts.push(term_q(f.pinyin_summary, p, w * W_PINYIN * W_SUMMARY));
            }
            match Self::concept_df(c, f, df) {
                Some(0) => {}
                Some(d) if d as f64 > COMMON_SHARE * num_docs as f64 => matchable += 1,
                _ => {
                    matchable += 1;
                    distinctive += 1;
                }
            }
            concept_qs.push((Occur::Should, should(alts)));
        }
        // When every concept is common, they all count.
        let counted = if distinctive > 0 {
            distinctive
        } else {
            matchable
        };
        let required = if relax { 1 } else { counted.div_ceil(3).max(1) };
        (
            Box::new(BooleanQuery::with_minimum_required_clauses(
                concept_qs, required,
            )),
            required,
        )
    }

    /// What to mark in snippets.
    pub(crate) fn highlight(&self) -> Highlight {
        let mut h = Highlight::default();
        for c in &self.concepts {
            for form in &c.forms {
                for t in &form.toks {
                    if t.han {
                        if !h.han.contains(&t.term) {
                            h.han.push(t.term.clone());
                        }
                    } else {
                        h.exact.insert(t.term.clone());
                        let d = if form.fuzzy {
                            fuzzy_distance(&t.raw)
                        } else {
                            0
                        };
                        if d > 0 {
                            h.fuzzy.push((t.term.clone(), d));
                        }
                        if form.prefix {
                            h.prefix.push(t.raw.clone());
                        }
                    }
                }
            }
            for (p, _) in &c.pinyin {
                h.pinyin.insert(p.clone());
            }
        }
        // Longest first so overlapping matches prefer the longer word.
        h.han.sort_by_key(|s| std::cmp::Reverse(s.len()));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner() -> Planner {
        Planner::new(&Synonyms::from_groups([
            vec!["passport", "护照", "huzhao"],
            vec!["lost", "丢失", "遗失", "丢了", "missing"],
            vec!["emergency travel document", "旅行证"],
        ]))
    }

    fn forms(p: &Plan) -> Vec<Vec<String>> {
        p.concepts
            .iter()
            .map(|c| {
                c.forms
                    .iter()
                    .map(|f| {
                        f.toks
                            .iter()
                            .map(|t| t.term.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn chinese_question_keeps_synonym_phrase_and_drops_question_frame() {
        let p = planner().plan("我的护照丢了怎么办？");
        let f = forms(&p);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].contains(&"passport".to_string()), "{f:?}");
        assert!(f[1].contains(&"遗失".to_string()), "{f:?}");
    }

    #[test]
    fn multi_word_synonym_phrase() {
        let p = planner().plan("Emergency travel documents");
        let f = forms(&p);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains(&"旅行证".to_string()), "{f:?}");
    }

    #[test]
    fn pinyin_syllables_are_joined() {
        let p = planner().plan("hu zhao");
        assert_eq!(p.concepts.len(), 2);
        assert!(p.concepts[0].pinyin.iter().any(|(s, _)| s == "huzhao"));
        let f = forms(&p);
        assert!(f[0].contains(&"护照".to_string()), "{f:?}");
    }

    #[test]
    fn punctuation_only_is_empty() {
        for q in ["", "   ", "？！。，", "*", "\"", "((", "🙂🙂"] {
            assert!(planner().plan(q).is_empty(), "{q}");
        }
        assert!(!planner().plan("the").is_empty());
    }
}
