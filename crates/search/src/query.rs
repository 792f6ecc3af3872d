//! Turns user text into a tantivy query programmatically (never via the query parser,
//! so tantivy syntax in user input is just text) and into highlighting rules.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tantivy::query::{
    BooleanQuery, BoostQuery, DisjunctionMaxQuery, FuzzyTermQuery, Occur, Query as TQuery,
    TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::Term;
use tantivy_jieba::jieba_rs::Jieba;

use crate::analysis::{
    analyze, edit_distance_within, fuzzy_distance, is_han, is_pinyin_syllable, is_pinyin_word,
    is_stopword, pinyin_readings, u_variants, word_analyzer, Segmenter, ZH_STOPWORDS,
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
/// Parts of a long word the dictionary already knows weigh less.
const W_SUBWORD_OF_KNOWN: f32 = 0.3;
/// Within one word, the best field counts fully and the other fields by this share.
const FIELD_TIE_BREAKER: f32 = 0.3;
/// A misspelt word corrected against the dictionary reaches the dictionary's other
/// words at this weight.
const W_CORRECTED: f32 = 0.6;
/// Each word of a dictionary phrase (and its own synonyms) stands in for the phrase
/// at this weight, so a document saying only part of it still counts.
const W_PHRASE_WORD: f32 = 0.4;
/// A long Han word matched by two thirds of its character bigrams (`养老金资格认正`,
/// `安全常识` against `安全基本常识`) at this weight.
const W_PARTIAL: f32 = 0.5;
/// A concept scores its best alternative plus this share of the others: synonyms
/// confirm a match without letting a word with many synonyms outweigh a rare one.
const TIE_BREAKER: f32 = 0.2;
/// Readings kept per dictionary word when heteronyms are combined.
const MAX_READINGS: usize = 8;
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
    /// A long Han word matched by most of its character bigrams only.
    partial: bool,
}

impl Form {
    fn new(toks: Vec<QTok>, weight: f32) -> Self {
        Form {
            toks,
            weight,
            fuzzy: false,
            prefix: false,
            partial: false,
        }
    }

    fn same_words(&self, other: &Form) -> bool {
        self.partial == other.partial
            && self.toks.len() == other.toks.len()
            && self
                .toks
                .iter()
                .zip(&other.toks)
                .all(|(a, b)| a.term == b.term)
    }
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
    /// Latin words of the dictionary (as typed, lowercase) → their indexed term, for
    /// correcting misspellings before the dictionary lookup.
    vocabulary: Vec<(String, String)>,
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
        // The pinyin of each Chinese member (every reading) is a key of its group too,
        // so `yanglaojin` reaches 养老金 and, through it, `pension`. Keys are stored as
        // typed and as the stemmer leaves them, which is how query words arrive.
        let mut pinyin_keys: Vec<(String, usize)> = Vec::new();
        for (gi, members) in groups.iter().enumerate() {
            for m in members {
                if m.len() != 1 || !m[0].han || m[0].term.chars().count() < 2 {
                    continue;
                }
                for reading in pinyin_readings(&m[0].term, MAX_READINGS) {
                    for p in u_variants(&reading) {
                        if p.len() >= 4 {
                            pinyin_keys.push((p, gi));
                        }
                    }
                }
            }
        }
        for (p, gi) in pinyin_keys {
            let stemmed = to_qtoks(&mut analyzer, &p)
                .into_iter()
                .next()
                .map(|t| t.term)
                .unwrap_or_else(|| p.clone());
            for key in [p, stemmed] {
                let entry = by_first.entry(key.clone()).or_default();
                if !entry.iter().any(|(s, g2)| s.len() == 1 && *g2 == gi) {
                    entry.push((vec![key], gi));
                }
            }
        }
        let mut vocabulary: Vec<(String, String)> = Vec::new();
        for members in &groups {
            for t in members.iter().flatten() {
                if !t.han
                    && t.raw.len() >= 4
                    && t.raw.bytes().all(|b| b.is_ascii_alphabetic())
                    && !vocabulary.iter().any(|(r, _)| *r == t.raw)
                {
                    vocabulary.push((t.raw.clone(), t.term.clone()));
                }
            }
        }
        Planner {
            analyzer,
            jieba,
            syn: PreparedSynonyms {
                groups,
                by_first,
                vocabulary,
            },
        }
    }

    /// The dictionary term a misspelt Latin word stands for: for a word of five
    /// letters or more that is neither in the dictionary nor in the index (`known`),
    /// the closest dictionary word within the typo distance (`robery` → `robbery`,
    /// `saftey` → `safety`), so misspellings still cross languages.
    fn correct(&self, t: &QTok, known: &dyn Fn(&str) -> bool) -> Option<String> {
        let d = fuzzy_distance(&t.raw);
        if t.han || d == 0 || self.syn.by_first.contains_key(&t.term) || known(&t.term) {
            return None;
        }
        for max in 1..=d {
            if let Some((_, term)) = self
                .syn
                .vocabulary
                .iter()
                .find(|(w, _)| edit_distance_within(&t.raw, w, max))
            {
                return Some(term.clone());
            }
        }
        None
    }

    /// Colloquial passives with an agent, `被人偷了`, `给人抢了`, `给抓了`, become the
    /// dictionary word `被偷`, `被抢`, `被抓` when there is one.
    fn join_passives(&self, toks: &mut Vec<QTok>) {
        const MARKERS: [&str; 4] = ["被", "给", "让", "叫"];
        const AGENTS: [&str; 4] = ["人", "别人", "坏人", "人家"];
        let mut i = 0;
        while i < toks.len() {
            if MARKERS.contains(&toks[i].term.as_str()) {
                let skip = usize::from(
                    toks.get(i + 1)
                        .is_some_and(|t| AGENTS.contains(&t.term.as_str())),
                );
                if let Some(verb) = toks.get(i + 1 + skip) {
                    let joined = format!("被{}", verb.term);
                    if verb.han
                        && verb.term.chars().count() == 1
                        && self.syn.by_first.contains_key(&joined)
                    {
                        toks.splice(
                            i..i + 2 + skip,
                            [QTok {
                                term: joined.clone(),
                                raw: joined,
                                han: true,
                            }],
                        );
                    }
                }
            }
            i += 1;
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

    /// Longest synonym phrase starting at `terms[i]`: its length and groups.
    fn synonym_at(&self, terms: &[String], i: usize) -> Option<(usize, Vec<usize>)> {
        let cands = self.syn.by_first.get(&terms[i])?;
        let mut best: Option<(usize, Vec<usize>)> = None;
        for (seq, gi) in cands {
            let l = seq.len();
            if i + l > terms.len() || terms[i..i + l].iter().zip(seq).any(|(t, s)| t != s) {
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
                out.push(Form::new(m.clone(), weight));
            }
        }
        out
    }

    /// Analyses the query text into concepts. `known` tells whether the index has a
    /// word term (a word it has is not a misspelling).
    pub(crate) fn plan(&self, text: &str, known: &dyn Fn(&str) -> bool) -> Plan {
        let end = text
            .char_indices()
            .nth(MAX_QUERY_CHARS)
            .map_or(text.len(), |(i, _)| i);
        let mut analyzer = self.analyzer.clone();
        let mut toks = to_qtoks(&mut analyzer, &text[..end]);
        self.join_passives(&mut toks);
        toks.truncate(MAX_QUERY_TOKENS);
        // The terms the dictionary is consulted with: misspellings corrected.
        let corrected: Vec<Option<String>> = toks.iter().map(|t| self.correct(t, known)).collect();
        let terms: Vec<String> = toks
            .iter()
            .zip(&corrected)
            .map(|(t, c)| c.clone().unwrap_or_else(|| t.term.clone()))
            .collect();

        let mut concepts: Vec<Concept> = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let (len, groups) = self.synonym_at(&terms, i).unwrap_or((1, Vec::new()));
            let main = toks[i..i + len].to_vec();
            let was_corrected = corrected[i..i + len].iter().any(Option::is_some);
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
            let syn_weight = if was_corrected {
                W_CORRECTED
            } else {
                W_SYNONYM
            };
            let mut alts = self.synonym_forms(&groups, &main, syn_weight);
            if len > 1 {
                // Each word of a phrase, and its own synonyms, stands in for the phrase.
                for t in &main {
                    if is_stopword(&t.raw) {
                        continue;
                    }
                    let tok = std::slice::from_ref(t);
                    alts.push(Form::new(tok.to_vec(), W_PHRASE_WORD));
                    let g = self.groups_of_word(&t.term);
                    alts.extend(self.synonym_forms(&g, tok, W_PHRASE_WORD * W_SYNONYM));
                }
            }
            if len == 1 && main[0].han && !c.stop {
                // Words inside a long word, and their synonyms, stand in for it.
                for sub in self.subwords(&main[0].term) {
                    let tok = QTok {
                        term: sub.clone(),
                        raw: sub.clone(),
                        han: true,
                    };
                    // A word the dictionary knows already brings its own equivalents;
                    // its parts say less about it.
                    let sw = if groups.is_empty() {
                        W_SUBWORD
                    } else {
                        W_SUBWORD_OF_KNOWN
                    };
                    let sub_groups = self.groups_of_word(&sub);
                    let more =
                        self.synonym_forms(&sub_groups, std::slice::from_ref(&tok), sw * W_SYNONYM);
                    alts.push(Form::new(vec![tok], sw));
                    alts.extend(more);
                }
                if main[0].term.chars().count() >= 4 {
                    // Most of its bigrams: a typo or a word inserted in the middle.
                    alts.push(Form {
                        partial: true,
                        ..Form::new(main.clone(), W_PARTIAL)
                    });
                }
            }
            c.forms.push(Form {
                fuzzy: len == 1,
                ..Form::new(main, 1.0)
            });
            // Each alternative once, at its best weight (they come best first).
            for f in alts {
                if !c.forms.iter().any(|g| g.same_words(&f)) {
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
                let mut groups = self.groups_of_word(&joined);
                if groups.is_empty() {
                    // The dictionary also knows the joined word as the stemmer leaves it.
                    let stemmed = to_qtoks(&mut analyzer, &joined)
                        .into_iter()
                        .next()
                        .map(|t| t.term)
                        .unwrap_or_default();
                    groups = self.groups_of_word(&stemmed);
                }
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

/// A long Han word matched by two thirds of its character bigrams in the gram fields.
fn partial_query(f: &TextFields, t: &QTok, w: f32) -> Option<Box<dyn TQuery>> {
    let g = grams(&t.term);
    if g.len() < 3 {
        return None;
    }
    let need = (g.len() * 2).div_ceil(3);
    let field_q = |field: Field, fw: f32| -> Box<dyn TQuery> {
        boosted(
            Box::new(BooleanQuery::with_minimum_required_clauses(
                g.iter()
                    .map(|x| (Occur::Should, term_q(field, x, 1.0)))
                    .collect(),
                need,
            )),
            w * fw,
        )
    };
    Some(should(vec![
        field_q(f.title_gram, W_TITLE_GRAM),
        field_q(f.text_gram, W_TEXT_GRAM),
    ]))
}

/// One word over every field; with `body` false, over the short fields only (title,
/// tags, summary).
fn token_query(
    f: &TextFields,
    t: &QTok,
    w: f32,
    fuzzy: bool,
    prefix: bool,
    body: bool,
) -> Box<dyn TQuery> {
    let mut clauses = vec![
        term_q(f.title, &t.term, w * W_TITLE),
        term_q(f.tags, &t.term, w * W_TAGS),
        term_q(f.summary, &t.term, w * W_SUMMARY),
    ];
    if body {
        clauses.push(term_q(f.body, &t.term, w * W_BODY));
    }
    if t.han {
        let g = grams(&t.term);
        clauses.push(boosted(
            must(g.iter().map(|x| term_q(f.title_gram, x, 1.0)).collect()),
            w * W_TITLE_GRAM,
        ));
        if body {
            clauses.push(boosted(
                must(g.iter().map(|x| term_q(f.text_gram, x, 1.0)).collect()),
                w * W_TEXT_GRAM,
            ));
        }
    }
    let dist = if fuzzy { fuzzy_distance(&t.raw) } else { 0 };
    if dist > 0 && t.term.chars().count() >= 4 {
        let fields = [(f.title, W_TITLE), (f.summary, W_SUMMARY), (f.body, W_BODY)];
        for (field, fw) in fields.into_iter().take(if body { 3 } else { 2 }) {
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
    // The best field counts, the others a little: a word in the title, tags, summary
    // and body at once must not outweigh two words of the question in the body.
    Box::new(DisjunctionMaxQuery::with_tie_breaker(
        clauses,
        FIELD_TIE_BREAKER,
    ))
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
    /// `word_df` holds, per form and word, the documents with the word in the body or
    /// the title (the larger).
    fn concept_df(
        c: &Concept,
        word_df: &[Vec<u64>],
        f: &TextFields,
        df: &dyn Fn(&Term) -> u64,
    ) -> Option<u64> {
        let mut best = 0u64;
        let mut unknown = false;
        for (form, form_word_df) in c.forms.iter().zip(word_df).take(12) {
            let mut form_df = u64::MAX;
            for (t, &word) in form.toks.iter().zip(form_word_df) {
                let mut d = word;
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
        let common = COMMON_SHARE * num_docs as f64;
        for c in &self.concepts {
            let word_df: Vec<Vec<u64>> = c
                .forms
                .iter()
                .map(|form| {
                    form.toks
                        .iter()
                        .map(|t| {
                            df(&Term::from_field_text(f.body, &t.term))
                                .max(df(&Term::from_field_text(f.title, &t.term)))
                        })
                        .collect()
                })
                .collect();
            let mut alts: Vec<Box<dyn TQuery>> = Vec::new();
            for (k, (form, form_word_df)) in c.forms.iter().zip(&word_df).enumerate() {
                // An alternative made of words most documents contain is looked for in
                // titles, tags and summaries only: in bodies it says little about the
                // concept and costs a union over most of the postings.
                let body = k == 0 || !form_word_df.iter().all(|&d| d as f64 > common);
                // A multi-word form shares its weight among its words, so that a long
                // synonym phrase does not outweigh the single word the user typed.
                let w = form.weight / form.toks.len() as f32;
                if form.partial {
                    alts.extend(form.toks.iter().filter_map(|t| partial_query(f, t, w)));
                    continue;
                }
                let parts: Vec<Box<dyn TQuery>> = form
                    .toks
                    .iter()
                    .map(|t| token_query(f, t, w, form.fuzzy, form.prefix, body))
                    .collect();
                alts.push(must(parts));
            }
            for (p, w) in &c.pinyin {
                alts.push(should(vec![
                    term_q(f.pinyin_title, p, w * W_PINYIN * W_TITLE),
                    term_q(f.pinyin_summary, p, w * W_PINYIN * W_SUMMARY),
                ]));
            }
            match Self::concept_df(c, &word_df, f, df) {
                Some(0) => {}
                Some(d) if d as f64 > common => matchable += 1,
                _ => {
                    matchable += 1;
                    distinctive += 1;
                }
            }
            let concept: Box<dyn TQuery> = if alts.len() == 1 {
                alts.pop().expect("one alternative")
            } else {
                Box::new(DisjunctionMaxQuery::with_tie_breaker(alts, TIE_BREAKER))
            };
            concept_qs.push((Occur::Should, concept));
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
        let p = planner().plan("我的护照丢了怎么办？", &|_| false);
        let f = forms(&p);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].contains(&"passport".to_string()), "{f:?}");
        assert!(f[1].contains(&"遗失".to_string()), "{f:?}");
    }

    #[test]
    fn multi_word_synonym_phrase() {
        let p = planner().plan("Emergency travel documents", &|_| false);
        let f = forms(&p);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains(&"旅行证".to_string()), "{f:?}");
    }

    #[test]
    fn pinyin_syllables_are_joined() {
        let p = planner().plan("hu zhao", &|_| false);
        assert_eq!(p.concepts.len(), 2);
        assert!(p.concepts[0].pinyin.iter().any(|(s, _)| s == "huzhao"));
        let f = forms(&p);
        assert!(f[0].contains(&"护照".to_string()), "{f:?}");
    }

    #[test]
    fn punctuation_only_is_empty() {
        for q in ["", "   ", "？！。，", "*", "\"", "((", "🙂🙂"] {
            assert!(planner().plan(q, &|_| false).is_empty(), "{q}");
        }
        assert!(!planner().plan("the", &|_| false).is_empty());
    }
}
