//! The compiled rules and the classification of one message.
//!
//! One Aho–Corasick automaton holds every term of the file (signals, pattern slots,
//! modifier markers, segment breaks), all in normalised form, and finds them in one
//! overlapping pass over the normalised message. Short ambiguous Han terms are then
//! checked against jieba's segmentation; modifiers damp the signals they reach; the
//! remaining evidence is summed per category and compared with the thresholds.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, MatchKind};
use jieba_rs::Jieba;

use crate::normalise::{self, is_han, is_word_char, Fc, Normalised, NoteKind, Rewriter, TypoIndex};
use crate::rules::{check_factor, check_weight, Position, RulesError, RulesFile, Scope};
use crate::{Assessment, Category, Reason};

/// Matches considered per message: bounds the cost of hostile input (a message made of
/// nothing but trigger words) while being far above what a real message produces.
const MAX_MATCHES: usize = 1024;
/// Longest quotation of the citizen's text in a reason, in bytes.
const MAX_QUOTE_BYTES: usize = 60;
/// Modifier blocks are tracked in a 64-bit mask per signal.
const MAX_MODIFIERS: usize = 64;

/// The jieba dictionary is large (tens of MB, ~0.3 s to load): one copy per process,
/// loaded the first time a message needs it.
fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

/// Loads the segmentation dictionary.
pub(crate) fn warm_up() {
    let _ = jieba();
}

#[derive(Clone, Copy, Debug)]
enum Target {
    Signal(u32),
    Slot { pattern: u32, slot: u32 },
    Marker(u32),
    NotPartOf(u32),
    RequiresAfter(u32),
    NotIfFollowed(u32),
    ClauseBreak,
    SentenceBreak,
}

struct Entry {
    targets: Vec<Target>,
    latin_start: bool,
    latin_end: bool,
}

struct Signal {
    kind: String,
    detail: String,
    category: Category,
    weight: f32,
    urgent: f32,
    modifiers: u64,
    boost: bool,
    whole_word: bool,
}

struct Pattern {
    kind: String,
    detail: String,
    category: Category,
    weight: f32,
    urgent: f32,
    modifiers: u64,
    within: Scope,
    slots: usize,
}

struct Modifier {
    kind: String,
    detail: String,
    position: Position,
    scope: Scope,
    window: Option<usize>,
    factor: f32,
    urgent_factor: f32,
    requires_after: bool,
    not_if_followed: bool,
    /// Signal or pattern kinds whose presence switches this modifier off.
    cancelled_by: Vec<String>,
}

pub(crate) struct Engine {
    rewriter: Rewriter,
    stem_exceptions: HashSet<String>,
    typos: TypoIndex,
    ac: Option<AhoCorasick>,
    entries: Vec<Entry>,
    signals: Vec<Signal>,
    patterns: Vec<Pattern>,
    modifiers: Vec<Modifier>,
    t_emergency: f32,
    t_fraud: f32,
    t_urgent: f32,
    fraud_over_emergency: f32,
    boost_needs: f32,
    max_reasons: usize,
}

/// A term found in the message: what it belongs to and where (bytes of the
/// normalised text).
#[derive(Clone, Copy, Debug)]
struct Hit {
    id: u32,
    sub: u32,
    entry: u32,
    s: u32,
    e: u32,
}

/// A modifier that reached a signal.
#[derive(Clone, Copy, Debug)]
struct Damp {
    factor: f32,
    urgent_factor: f32,
    modifier: u32,
    marker: (u32, u32),
}

/// Evidence is summed per category, kind and whether it only strengthens.
type KindKey<'r> = (Category, &'r str, bool);

/// The best occurrence of one pattern slot: factor, urgent factor, where, and why.
type SlotBest = Option<(f32, f32, Hit, Option<Damp>)>;

/// Sentence and clause boundaries of one message.
struct Segments {
    clause_ends: Vec<u32>,
    sentence_ends: Vec<u32>,
}

impl Segments {
    fn id(&self, scope: Scope, pos: u32) -> usize {
        match scope {
            Scope::Message => 0,
            Scope::Sentence => self.sentence_ends.partition_point(|&b| b <= pos),
            Scope::Clause => self.clause_ends.partition_point(|&b| b <= pos),
        }
    }
}

/// One piece of evidence after modifiers.
struct Contribution<'r> {
    category: Category,
    kind: &'r str,
    detail: &'r str,
    weight: f32,
    urgent: f32,
    boost: bool,
    /// Undamped weight, to rank the reasons that explain a discount.
    base: f32,
    span: (u32, u32),
    /// Further spans of a pattern's other slots.
    more: Vec<(u32, u32)>,
    damp: Option<Damp>,
    key: (u8, u32, u32),
}

impl Engine {
    pub fn compile(text: &str) -> Result<Engine, RulesError> {
        let file = RulesFile::parse(text)?;
        let stem_exceptions: HashSet<String> = file
            .normalise
            .stem_exceptions
            .iter()
            .map(|w| w.trim().to_lowercase())
            .collect();

        // Rewrite tables.
        let mut rw_entries = Vec::new();
        let mut seen_sources: HashMap<String, String> = HashMap::new();
        for (table, kind) in [
            (&file.normalise.typos, NoteKind::Typo),
            (&file.normalise.pinyin, NoteKind::Pinyin),
        ] {
            let table_name = if kind == NoteKind::Typo {
                "typos"
            } else {
                "pinyin"
            };
            for (meaning, spellings) in table {
                let place = format!("normalise.{table_name} \"{meaning}\"");
                let to: String = fold_plain(meaning);
                if to.is_empty() {
                    return Err(RulesError::invalid(place, "the meaning is empty"));
                }
                if spellings.is_empty() {
                    return Err(RulesError::invalid(place, "no spellings listed"));
                }
                for sp in spellings {
                    let from = fold_plain(sp);
                    if from.is_empty() {
                        return Err(RulesError::invalid(
                            place,
                            format!("spelling \"{sp}\" is empty once normalised"),
                        ));
                    }
                    if from == to {
                        return Err(RulesError::invalid(
                            place,
                            format!("spelling \"{sp}\" is the meaning itself"),
                        ));
                    }
                    let mut variants = vec![from.clone()];
                    if kind == NoteKind::Pinyin && from.contains(' ') {
                        variants.push(from.replace(' ', ""));
                    }
                    for v in variants {
                        if let Some(prev) = seen_sources.get(&v) {
                            if *prev != to {
                                return Err(RulesError::invalid(
                                    place,
                                    format!("spelling \"{sp}\" is also listed for \"{prev}\""),
                                ));
                            }
                            continue;
                        }
                        seen_sources.insert(v.clone(), to.clone());
                        rw_entries.push((v, to.clone(), kind));
                    }
                }
            }
        }
        let rewriter =
            Rewriter::new(rw_entries).map_err(|e| RulesError::invalid("normalise", e))?;

        let canon = |t: &str| -> String {
            let mut notes = Vec::new();
            let chars = rewriter.apply(normalise::fold(t), &mut notes);
            let n = normalise::finish(chars, notes, &stem_exceptions, None);
            n.text.trim().to_string()
        };

        // Modifiers.
        if file.modifier.len() > MAX_MODIFIERS {
            return Err(RulesError::invalid(
                "modifier",
                format!("at most {MAX_MODIFIERS} [[modifier]] blocks"),
            ));
        }
        let mut terms: HashMap<String, Entry> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut add = |t: String, target: Target, terms: &mut HashMap<String, Entry>| {
            let e = terms.entry(t.clone()).or_insert_with(|| {
                order.push(t.clone());
                Entry {
                    targets: Vec::new(),
                    latin_start: t.chars().next().is_some_and(is_word_char),
                    latin_end: t.chars().last().is_some_and(is_word_char),
                }
            });
            e.targets.push(target);
        };
        let mut vocab: HashSet<String> = HashSet::new();
        let mut targets: HashSet<String> = HashSet::new();
        let note_vocab = |t: &str, vocab: &mut HashSet<String>| {
            for w in t.split(|c: char| !is_word_char(c)) {
                if !w.is_empty() {
                    vocab.insert(w.to_string());
                }
            }
        };

        let mut modifiers = Vec::with_capacity(file.modifier.len());
        let mut modifier_kinds: HashMap<String, u64> = HashMap::new();
        for (i, m) in file.modifier.iter().enumerate() {
            let place = format!("modifier #{} \"{}\"", i + 1, m.kind);
            check_name(&place, "kind", &m.kind)?;
            check_factor(&place, "factor", m.factor)?;
            check_factor(&place, "urgent_factor", m.urgent_factor)?;
            if m.position == Position::Overlap && m.window.is_some() {
                return Err(RulesError::invalid(
                    place,
                    "window has no meaning with position = \"overlap\"",
                ));
            }
            let list = file.expand(&format!("{place} terms"), &m.terms)?;
            if list.is_empty() {
                return Err(RulesError::invalid(place, "terms is empty"));
            }
            for t in &list {
                let c = nonempty(&place, "term", t, canon(t))?;
                note_vocab(&c, &mut vocab);
                add(c, Target::Marker(i as u32), &mut terms);
            }
            for t in file.expand(&format!("{place} not_part_of"), &m.not_part_of)? {
                let c = canon(&t);
                if c.is_empty() {
                    return Err(RulesError::invalid(
                        &place,
                        format!("not_part_of \"{t}\" is empty once normalised"),
                    ));
                }
                add(c, Target::NotPartOf(i as u32), &mut terms);
            }
            let req = file.expand(&format!("{place} requires_after"), &m.requires_after)?;
            for t in &req {
                let c = nonempty(&place, "requires_after", t, canon(t))?;
                add(c, Target::RequiresAfter(i as u32), &mut terms);
            }
            let nf = file.expand(
                &format!("{place} not_if_followed_by"),
                &m.not_if_followed_by,
            )?;
            for t in &nf {
                let c = nonempty(&place, "not_if_followed_by", t, canon(t))?;
                add(c, Target::NotIfFollowed(i as u32), &mut terms);
            }
            *modifier_kinds.entry(m.kind.clone()).or_default() |= 1u64 << i;
            modifiers.push(Modifier {
                kind: m.kind.clone(),
                detail: m.detail.clone(),
                position: m.position,
                scope: m.scope,
                window: m.window,
                factor: m.factor,
                urgent_factor: m.urgent_factor,
                requires_after: !req.is_empty(),
                not_if_followed: !nf.is_empty(),
                cancelled_by: m.cancelled_by.clone(),
            });
        }
        let mask_of = |place: &str, kinds: &[String]| -> Result<u64, RulesError> {
            let mut mask = 0u64;
            for k in file.expand(&format!("{place} modifiers"), kinds)? {
                mask |= *modifier_kinds.get(&k).ok_or_else(|| {
                    RulesError::invalid(
                        place,
                        format!("modifiers: no [[modifier]] has kind \"{k}\""),
                    )
                })?;
            }
            Ok(mask)
        };

        // Signals.
        let mut signals = Vec::with_capacity(file.signal.len());
        let mut signal_kinds: HashSet<String> = HashSet::new();
        for (i, s) in file.signal.iter().enumerate() {
            let place = format!("signal #{} \"{}\"", i + 1, s.kind);
            check_name(&place, "kind", &s.kind)?;
            check_weight(&place, "weight", s.weight)?;
            check_weight(&place, "urgent", s.urgent)?;
            if s.category == Category::Routine {
                return Err(RulesError::invalid(
                    place,
                    "category must be emergency, fraud or urgent",
                ));
            }
            if s.category == Category::Urgent && s.urgent != 0.0 {
                return Err(RulesError::invalid(
                    place,
                    "urgent is only for emergency and fraud signals",
                ));
            }
            let list = file.expand(&format!("{place} terms"), &s.terms)?;
            if list.is_empty() {
                return Err(RulesError::invalid(place, "terms is empty"));
            }
            for t in &list {
                let c = nonempty(&place, "term", t, canon(t))?;
                note_vocab(&c, &mut vocab);
                note_vocab(&c, &mut targets);
                add(c, Target::Signal(i as u32), &mut terms);
            }
            signal_kinds.insert(s.kind.clone());
            signals.push(Signal {
                kind: s.kind.clone(),
                detail: s.detail.clone(),
                category: s.category,
                weight: s.weight,
                urgent: s.urgent,
                modifiers: mask_of(&place, &s.modifiers)?,
                boost: s.boost,
                whole_word: s.whole_word,
            });
        }

        // Patterns.
        let mut patterns = Vec::with_capacity(file.pattern.len());
        for (i, p) in file.pattern.iter().enumerate() {
            let place = format!("pattern #{} \"{}\"", i + 1, p.kind);
            check_name(&place, "kind", &p.kind)?;
            check_weight(&place, "weight", p.weight)?;
            check_weight(&place, "urgent", p.urgent)?;
            if p.category == Category::Routine {
                return Err(RulesError::invalid(
                    place,
                    "category must be emergency, fraud or urgent",
                ));
            }
            if p.all.len() < 2 || p.all.len() > 8 {
                return Err(RulesError::invalid(
                    place,
                    "all must list between 2 and 8 slots",
                ));
            }
            for (k, slot) in p.all.iter().enumerate() {
                let list = file.expand(&format!("{place} slot {}", k + 1), slot)?;
                if list.is_empty() {
                    return Err(RulesError::invalid(
                        &place,
                        format!("slot {} is empty", k + 1),
                    ));
                }
                for t in &list {
                    let c = nonempty(&place, "term", t, canon(t))?;
                    note_vocab(&c, &mut vocab);
                    note_vocab(&c, &mut targets);
                    add(
                        c,
                        Target::Slot {
                            pattern: i as u32,
                            slot: k as u32,
                        },
                        &mut terms,
                    );
                }
            }
            signal_kinds.insert(p.kind.clone());
            patterns.push(Pattern {
                kind: p.kind.clone(),
                detail: p.detail.clone(),
                category: p.category,
                weight: p.weight,
                urgent: p.urgent,
                modifiers: mask_of(&place, &p.modifiers)?,
                within: p.within,
                slots: p.all.len(),
            });
        }
        for (i, m) in file.modifier.iter().enumerate() {
            for k in &m.cancelled_by {
                if !signal_kinds.contains(k) {
                    return Err(RulesError::invalid(
                        format!("modifier #{} \"{}\"", i + 1, m.kind),
                        format!("cancelled_by: no signal or pattern has kind \"{k}\""),
                    ));
                }
            }
        }

        // Segment breaks.
        for (list, target, key) in [
            (
                &file.segmentation.sentence_breaks,
                Target::SentenceBreak,
                "sentence_breaks",
            ),
            (
                &file.segmentation.clause_breaks,
                Target::ClauseBreak,
                "clause_breaks",
            ),
        ] {
            for t in list {
                let c = canon(t);
                if c.is_empty() {
                    return Err(RulesError::invalid(
                        format!("segmentation.{key}"),
                        format!("\"{t}\" is empty once normalised"),
                    ));
                }
                add(c, target, &mut terms);
            }
        }

        let mut protected: HashSet<String> = HashSet::new();
        for w in &file.normalise.not_typos {
            let w = w.trim().to_lowercase();
            protected.insert(normalise::stem(&w, &stem_exceptions).into_owned());
            protected.insert(w);
        }
        let typos = TypoIndex::new(vocab, &targets, protected, file.normalise.typo_min_len);

        let mut entries = Vec::with_capacity(order.len());
        for t in &order {
            if let Some(e) = terms.remove(t) {
                entries.push(e);
            }
        }
        let ac = if order.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&order)
                    .map_err(|e| RulesError::invalid("terms", e.to_string()))?,
            )
        };
        let d = &file.decision;
        Ok(Engine {
            rewriter,
            stem_exceptions,
            typos,
            ac,
            entries,
            signals,
            patterns,
            modifiers,
            t_emergency: d.emergency,
            t_fraud: d.fraud,
            t_urgent: d.urgent,
            fraud_over_emergency: d.fraud_over_emergency,
            boost_needs: d.boost_needs,
            max_reasons: d.max_reasons.clamp(1, 64),
        })
    }

    pub fn normalise(&self, text: &str) -> Normalised {
        let mut notes = Vec::new();
        let chars: Vec<Fc> = self.rewriter.apply(normalise::fold(text), &mut notes);
        normalise::finish(chars, notes, &self.stem_exceptions, Some(&self.typos))
    }

    pub fn classify(&self, text: &str) -> Assessment {
        let n = self.normalise(text);
        let routine = Assessment {
            category: Category::Routine,
            score: 1.0,
            reasons: Vec::new(),
        };
        let Some(ac) = &self.ac else { return routine };
        if n.text.is_empty() {
            return routine;
        }
        let t = n.text.as_str();

        // 1. Every term, overlapping.
        let mut sig: Vec<Hit> = Vec::new();
        let mut slots: Vec<Hit> = Vec::new();
        let mut marks: Vec<Hit> = Vec::new();
        let mut npo: Vec<Hit> = Vec::new();
        let mut req: Vec<Hit> = Vec::new();
        let mut nif: Vec<Hit> = Vec::new();
        let mut seg = Segments {
            clause_ends: Vec::new(),
            sentence_ends: Vec::new(),
        };
        let mut it = t.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            let next = it.peek().map(|&(_, n)| n);
            if c == '\n' || (c == '.' && next.is_none_or(|n| n == ' ' || n == '\n')) {
                seg.sentence_ends.push((i + 1) as u32);
            }
        }
        let mut count = 0usize;
        for m in ac.find_overlapping_iter(t) {
            let entry = &self.entries[m.pattern().as_usize()];
            if entry.latin_start && t[..m.start()].chars().next_back().is_some_and(is_word_char) {
                continue;
            }
            if entry.latin_end && t[m.end()..].chars().next().is_some_and(is_word_char) {
                continue;
            }
            count += 1;
            if count > MAX_MATCHES {
                break;
            }
            let (s, e) = (m.start() as u32, m.end() as u32);
            let ent = m.pattern().as_u32();
            for &target in &entry.targets {
                let hit = |id: u32, sub: u32| Hit {
                    id,
                    sub,
                    entry: ent,
                    s,
                    e,
                };
                match target {
                    Target::Signal(id) => sig.push(hit(id, 0)),
                    Target::Slot { pattern, slot } => slots.push(hit(pattern, slot)),
                    Target::Marker(id) => marks.push(hit(id, 0)),
                    Target::NotPartOf(id) => npo.push(hit(id, 0)),
                    Target::RequiresAfter(id) => req.push(hit(id, 0)),
                    Target::NotIfFollowed(id) => nif.push(hit(id, 0)),
                    Target::ClauseBreak => seg.clause_ends.push(e),
                    Target::SentenceBreak => seg.sentence_ends.push(e),
                }
            }
        }
        if sig.is_empty() && slots.is_empty() {
            return routine;
        }
        seg.sentence_ends.sort_unstable();
        seg.sentence_ends.dedup();
        seg.clause_ends.extend_from_slice(&seg.sentence_ends);
        seg.clause_ends.sort_unstable();
        seg.clause_ends.dedup();

        // 2. Short ambiguous Han terms must be whole jieba words.
        if sig.iter().any(|h| self.signals[h.id as usize].whole_word) {
            let mut cache: HashMap<u32, Vec<u32>> = HashMap::new();
            sig.retain(|h| {
                if !self.signals[h.id as usize].whole_word {
                    return true;
                }
                let (s, e) = (h.s as usize, h.e as usize);
                if !t[s..e].chars().next().is_some_and(is_han) {
                    return true;
                }
                let run_s = t[..s]
                    .char_indices()
                    .rev()
                    .take_while(|(_, c)| is_han(*c))
                    .last()
                    .map_or(s, |(i, _)| i);
                let run_e = t[e..]
                    .char_indices()
                    .find(|(_, c)| !is_han(*c))
                    .map_or(t.len(), |(i, _)| e + i);
                let bounds = cache.entry(run_s as u32).or_insert_with(|| {
                    let mut b = vec![run_s as u32];
                    for tok in jieba().cut(&t[run_s..run_e], false) {
                        b.push((run_s + tok.byte_end) as u32);
                    }
                    b
                });
                bounds.binary_search(&h.s).is_ok() && bounds.binary_search(&h.e).is_ok()
            });
        }

        // 3. Markers inside an excluded longer word do not count.
        if !npo.is_empty() {
            marks.retain(|m| {
                !npo.iter()
                    .any(|x| x.id == m.id && x.s <= m.s && m.e <= x.e && (x.e - x.s) > (m.e - m.s))
            });
        }
        let mut present: Vec<&str> = sig
            .iter()
            .map(|h| self.signals[h.id as usize].kind.as_str())
            .collect();
        present.sort_unstable();
        present.dedup();
        let enabled: Vec<bool> = self
            .modifiers
            .iter()
            .map(|m| !m.cancelled_by.iter().any(|k| present.contains(&k.as_str())))
            .collect();
        // Markers of disabled modifiers are dropped; markers that reach the whole message
        // from anywhere are kept once per modifier; the others are sorted by position so
        // that a signal only looks at the markers of its own sentence.
        let mut local: Vec<Mark> = Vec::new();
        let mut global: Vec<Mark> = Vec::new();
        let mut seen_global = 0u64;
        for m in &marks {
            if !enabled[m.id as usize] {
                continue;
            }
            let md = &self.modifiers[m.id as usize];
            let mark = Mark {
                id: m.id,
                s: m.s,
                e: m.e,
                clause: seg.id(Scope::Clause, m.s),
                sentence: seg.id(Scope::Sentence, m.s),
            };
            if md.scope == Scope::Message {
                let anywhere = md.position == Position::Either
                    && md.window.is_none()
                    && !md.requires_after
                    && !md.not_if_followed;
                if anywhere {
                    if seen_global & (1u64 << m.id) != 0 {
                        continue;
                    }
                    seen_global |= 1u64 << m.id;
                }
                global.push(mark);
            } else {
                local.push(mark);
            }
        }
        local.sort_by_key(|m| m.s);
        let present_mods = local
            .iter()
            .chain(global.iter())
            .fold(0u64, |acc, m| acc | (1u64 << m.id));
        let ctx = Ctx {
            present: present_mods,
            engine: self,
            n: &n,
            seg: &seg,
            local: &local,
            global: &global,
            req: &req,
            nif: &nif,
        };

        // 4. Signals after modifiers.
        let mut contribs: Vec<Contribution> = Vec::with_capacity(sig.len() + 4);
        for h in &sig {
            let s = &self.signals[h.id as usize];
            let d = ctx.damp(h.s, h.e, s.modifiers);
            let (f, uf) = d.map_or((1.0, 1.0), |d| (d.factor, d.urgent_factor));
            contribs.push(Contribution {
                category: s.category,
                kind: &s.kind,
                detail: &s.detail,
                weight: s.weight * f,
                urgent: s.urgent * uf,
                boost: s.boost,
                base: s.weight.max(s.urgent),
                span: (h.s, h.e),
                more: Vec::new(),
                damp: d,
                key: (0, h.id, h.entry),
            });
        }

        // 5. Patterns: every slot in one clause, sentence or the message.
        for (pi, p) in self.patterns.iter().enumerate() {
            let mine: Vec<&Hit> = slots.iter().filter(|h| h.id == pi as u32).collect();
            if mine.len() < p.slots {
                continue;
            }
            // segment id → per slot best (factor, urgent factor, hit, damp)
            let mut best: HashMap<usize, Vec<SlotBest>> = HashMap::new();
            for h in mine {
                let d = ctx.damp(h.s, h.e, p.modifiers);
                let (f, uf) = d.map_or((1.0, 1.0), |d| (d.factor, d.urgent_factor));
                let sid = seg.id(p.within, h.s);
                let row = best.entry(sid).or_insert_with(|| vec![None; p.slots]);
                let cell = &mut row[h.sub as usize];
                if cell.is_none_or(|(bf, _, _, _)| f > bf) {
                    *cell = Some((f, uf, *h, d));
                }
            }
            let mut chosen: Option<(f32, usize)> = None;
            for (sid, row) in &best {
                if row.iter().all(|c| c.is_some()) {
                    let f = row.iter().flatten().map(|c| c.0).fold(1.0f32, f32::min);
                    if chosen.is_none_or(|(cf, csid)| f > cf || (f == cf && *sid < csid)) {
                        chosen = Some((f, *sid));
                    }
                }
            }
            let Some((_, sid)) = chosen else { continue };
            let cells: Vec<&(f32, f32, Hit, Option<Damp>)> = best[&sid].iter().flatten().collect();
            let weakest = cells
                .iter()
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .copied()
                .copied();
            let mut spans: Vec<(u32, u32)> = cells.iter().map(|c| (c.2.s, c.2.e)).collect();
            spans.sort_unstable();
            spans.dedup();
            let (f, uf, damp) = match weakest {
                Some((f, _, _, d)) => (f, cells.iter().map(|c| c.1).fold(1.0f32, f32::min), d),
                None => (1.0, 1.0, None),
            };
            let first = spans.remove(0);
            contribs.push(Contribution {
                category: p.category,
                kind: &p.kind,
                detail: &p.detail,
                weight: p.weight * f,
                urgent: p.urgent * uf,
                boost: false,
                base: p.weight.max(p.urgent),
                span: first,
                more: spans,
                damp,
                key: (1, pi as u32, 0),
            });
        }

        self.decide(text, &n, contribs)
    }

    fn damp_reason(&self, text: &str, n: &Normalised, kind: &str, signal: &str, d: Damp) -> Reason {
        let m = &self.modifiers[d.modifier as usize];
        let marker = quote(text, n, d.marker.0, d.marker.1);
        let detail = m
            .detail
            .replace("{kind}", kind)
            .replace("{signal}", signal)
            .replace("{marker}", &marker);
        Reason {
            kind: m.kind.clone(),
            matched: marker,
            detail,
        }
    }

    fn decide(&self, text: &str, n: &Normalised, mut contribs: Vec<Contribution>) -> Assessment {
        // The same term (or pattern) counts once: keep its strongest occurrence.
        contribs.sort_by(|a, b| a.key.cmp(&b.key).then(b.weight.total_cmp(&a.weight)));
        contribs.dedup_by(|a, b| a.key == b.key);

        // Per category and kind: strongest piece in full, then halves, quarters, ...
        // A handful of kinds per message: linear search beats hashing.
        fn bucket<K: PartialEq>(v: &mut Vec<(K, Vec<f32>)>, key: K) -> &mut Vec<f32> {
            match v.iter().position(|(k, _)| *k == key) {
                Some(i) => &mut v[i].1,
                None => {
                    v.push((key, Vec::new()));
                    &mut v.last_mut().expect("just pushed").1
                }
            }
        }
        let mut per_kind: Vec<(KindKey, Vec<f32>)> = Vec::new();
        let mut spill: Vec<(&str, Vec<f32>)> = Vec::new();
        for c in &contribs {
            if c.weight > 0.0 {
                bucket(&mut per_kind, (c.category, c.kind, c.boost)).push(c.weight);
            }
            if c.urgent > 0.0 {
                bucket(&mut spill, c.kind).push(c.urgent);
            }
        }
        let dimin = |v: &mut Vec<f32>| -> f32 {
            v.sort_by(|a, b| b.total_cmp(a));
            v.iter()
                .enumerate()
                .map(|(i, w)| w / (1u32 << i.min(20)) as f32)
                .sum()
        };
        let mut base = [0f32; 4];
        let mut boosts = [0f32; 4];
        for ((cat, _, boost), v) in per_kind.iter_mut() {
            let sum = dimin(v);
            if *boost {
                boosts[*cat as usize] += sum;
            } else {
                base[*cat as usize] += sum;
            }
        }
        let mut total = base;
        for i in 0..4 {
            if base[i] >= self.boost_needs && base[i] > 0.0 {
                total[i] += boosts[i];
            }
        }
        let boost_open =
            |cat: Category| base[cat as usize] >= self.boost_needs && base[cat as usize] > 0.0;
        for (_, v) in spill.iter_mut() {
            total[Category::Urgent as usize] += dimin(v);
        }
        let e = total[Category::Emergency as usize] / self.t_emergency;
        let f = total[Category::Fraud as usize] / self.t_fraud;
        let u = total[Category::Urgent as usize] / self.t_urgent;

        let category = if e >= 1.0 && f >= 1.0 {
            if total[Category::Emergency as usize] * self.fraud_over_emergency
                >= total[Category::Fraud as usize]
            {
                Category::Emergency
            } else {
                Category::Fraud
            }
        } else if e >= 1.0 {
            Category::Emergency
        } else if f >= 1.0 {
            Category::Fraud
        } else if u >= 1.0 {
            Category::Urgent
        } else {
            Category::Routine
        };
        let ratios = [
            (Category::Emergency, e),
            (Category::Fraud, f),
            (Category::Urgent, u),
        ];
        let score = match category {
            Category::Routine => {
                let top = ratios.iter().map(|r| r.1).fold(0.0f32, f32::max);
                1.0 - 0.5 * top
            }
            win => {
                let rw = ratios.iter().find(|r| r.0 == win).map_or(1.0, |r| r.1);
                let mut s = 1.0 - 0.5 * (-1.2 * (rw - 1.0)).exp();
                let rival = ratios
                    .iter()
                    .filter(|r| r.0 != win)
                    .map(|r| r.1)
                    .fold(0.0f32, f32::max);
                if rival >= 1.0 {
                    s *= 1.0 - 0.3 * (rival / rw).min(1.0);
                }
                s
            }
        };
        let score = if score.is_finite() {
            score.clamp(0.01, 0.99)
        } else {
            0.5
        };

        // Reasons: what counted (strongest first, the chosen category first), then what
        // was discounted and why, then the spellings that were read differently. Text is
        // only built for the reasons that are kept.
        let mut ranked: Vec<(f32, usize, bool)> = Vec::new();
        for (i, c) in contribs.iter().enumerate() {
            let counted_main = c.weight > 0.001 && (!c.boost || boost_open(c.category));
            if counted_main || c.urgent > 0.001 {
                let eff = if counted_main { c.weight } else { c.urgent };
                let bonus = if c.category == category { 10.0 } else { 0.0 };
                ranked.push((bonus + eff, i, false));
            }
            if c.damp.is_some() {
                ranked.push((c.base * 0.5, i, true));
            }
        }
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut reasons: Vec<Reason> = Vec::new();
        let mut note_ids: Vec<usize> = Vec::new();
        for &(_, i, is_damp) in &ranked {
            if reasons.len() >= self.max_reasons {
                break;
            }
            let c = &contribs[i];
            let mut matched = quote(text, n, c.span.0, c.span.1);
            for &(s, e) in &c.more {
                let q = quote(text, n, s, e);
                if !matched.split(" … ").any(|p| p == q) {
                    matched.push_str(" … ");
                    matched.push_str(&q);
                }
            }
            let r = match (is_damp, c.damp) {
                (true, Some(d)) => self.damp_reason(text, n, c.kind, &matched, d),
                _ => {
                    for &(s, e) in std::iter::once(&c.span).chain(&c.more) {
                        note_ids.extend(n.notes_in(s as usize, e as usize));
                    }
                    Reason {
                        kind: c.kind.to_string(),
                        matched: cut(&matched).trim_end_matches([' ', '…']).to_string(),
                        detail: c.detail.to_string(),
                    }
                }
            };
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
        note_ids.sort_unstable();
        note_ids.dedup();
        for id in note_ids {
            let note = &n.notes[id];
            let matched = cut(&text[note.orig_start..note.orig_end]);
            let (kind, verb) = match note.kind {
                NoteKind::Typo => ("typo", "read as"),
                NoteKind::Pinyin => ("pinyin", "typed pinyin read as"),
            };
            let r = Reason {
                kind: kind.to_string(),
                matched,
                detail: format!("{verb} “{}”", note.to),
            };
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
        reasons.truncate(self.max_reasons);
        Assessment {
            category,
            score,
            reasons,
        }
    }
}

/// What a modifier check needs about the current message.
struct Ctx<'a> {
    engine: &'a Engine,
    n: &'a Normalised,
    seg: &'a Segments,
    /// Clause- and sentence-scoped markers, by position.
    local: &'a [Mark],
    /// Message-scoped markers.
    global: &'a [Mark],
    req: &'a [Hit],
    nif: &'a [Hit],
    /// Modifier blocks with at least one marker in the message.
    present: u64,
}

/// A modifier marker with the clause and sentence it stands in.
#[derive(Clone, Copy, Debug)]
struct Mark {
    id: u32,
    s: u32,
    e: u32,
    clause: usize,
    sentence: usize,
}

impl Ctx<'_> {
    /// The strongest modifier reaching the span `[s, e)` among those in `mask`.
    fn damp(&self, s: u32, e: u32, mask: u64) -> Option<Damp> {
        if mask & self.present == 0 {
            return None;
        }
        let clause = self.seg.id(Scope::Clause, s);
        let sentence = self.seg.id(Scope::Sentence, s);
        let ends = &self.seg.sentence_ends;
        let from = if sentence == 0 { 0 } else { ends[sentence - 1] };
        let to = ends.get(sentence).copied().unwrap_or(u32::MAX);
        let lo = self.local.partition_point(|m| m.s < from);
        let hi = self.local.partition_point(|m| m.s < to);
        let mut best: Option<Damp> = None;
        for mk in self.local[lo..hi].iter().chain(self.global.iter()) {
            if mask & (1u64 << mk.id) == 0 {
                continue;
            }
            let m = &self.engine.modifiers[mk.id as usize];
            let same = match m.scope {
                Scope::Clause => mk.clause == clause,
                Scope::Sentence => mk.sentence == sentence,
                Scope::Message => true,
            };
            if !same {
                continue;
            }
            if let Some(b) = best {
                if (m.factor, m.urgent_factor) >= (b.factor, b.urgent_factor) {
                    continue;
                }
            }
            let within = |gap: usize| m.window.is_none_or(|w| gap <= w);
            let before = || mk.e <= s && within(self.n.units_between(mk.e as usize, s as usize));
            let after = || mk.s >= e && within(self.n.units_between(e as usize, mk.s as usize));
            let reaches = match m.position {
                Position::Before => before(),
                Position::After => after(),
                Position::Either => before() || after(),
                Position::Overlap => mk.s < e && s < mk.e && !(mk.s == s && mk.e == e),
            };
            if !reaches {
                continue;
            }
            if m.requires_after {
                let sid = self.seg.id(m.scope, s);
                let ok = self.req.iter().any(|r| {
                    r.id == mk.id && r.s >= e && r.s >= mk.e && self.seg.id(m.scope, r.s) == sid
                });
                if !ok {
                    continue;
                }
            }
            if m.not_if_followed
                && self.nif.iter().any(|r| {
                    r.id == mk.id && r.s >= e && self.n.units_between(e as usize, r.s as usize) == 0
                })
            {
                continue;
            }
            best = Some(Damp {
                factor: m.factor,
                urgent_factor: m.urgent_factor,
                modifier: mk.id,
                marker: (mk.s, mk.e),
            });
        }
        best
    }
}

/// The citizen's own text behind a normalised span, cut to a readable length.
fn quote(text: &str, n: &Normalised, s: u32, e: u32) -> String {
    let (os, oe) = n.orig_range(s as usize, e as usize);
    match text.get(os..oe) {
        Some(q) => cut(q.trim()),
        None => String::new(),
    }
}

fn cut(q: &str) -> String {
    if q.len() <= MAX_QUOTE_BYTES {
        return q.to_string();
    }
    let mut end = MAX_QUOTE_BYTES;
    while !q.is_char_boundary(end) {
        end -= 1;
    }
    q[..end].to_string()
}

/// Folding and rewriting-free canonical form, for table keys.
fn fold_plain(t: &str) -> String {
    let s: String = normalise::fold(t).iter().map(|f| f.c).collect();
    s.trim().to_string()
}

fn check_name(place: &str, key: &str, v: &str) -> Result<(), RulesError> {
    if !v.is_empty()
        && v.len() <= 40
        && v.bytes()
            .all(|c| c.is_ascii_lowercase() || c == b'_' || c.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(RulesError::invalid(
            place,
            format!("{key} \"{v}\" must be lower-case letters, digits and _"),
        ))
    }
}

/// A rule term's matching form (`c`, from `t`); a term that normalises to nothing is an
/// error naming the rule and the term, so an editor can find it.
fn nonempty(place: &str, what: &str, t: &str, c: String) -> Result<String, RulesError> {
    if c.is_empty() {
        return Err(RulesError::invalid(
            place,
            format!("{what} \"{t}\" is empty once normalised"),
        ));
    }
    Ok(c)
}
