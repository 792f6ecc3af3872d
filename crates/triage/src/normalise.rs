//! Text normalisation: the same pipeline runs over rule terms and over messages, so a
//! term written once in the rules file matches every spelling that folds to it.
//!
//! 1. **Fold** character by character: invisible characters dropped, control characters
//!    and whitespace collapsed (a newline is kept, it ends a sentence), full-width ASCII
//!    made half-width, curly quotes made straight, lower-cased, runs of three or more
//!    identical Latin letters shortened to one (`heeelp` → `help`), and Traditional
//!    Chinese folded to Simplified (fast2s).
//! 2. **Replace** what citizens type with what they mean: typo and homophone table
//!    (`抢节` → `抢劫`) and typed pinyin (`jiuming` → `救命`, whole Latin words only).
//!    Spaces between two Han characters are then dropped (`救 命` → `救命`).
//! 3. **Latin words**: each run of ASCII letters is stemmed (`followed` → `follow`) and,
//!    for messages, a word of five letters or more that is no rule word is corrected to
//!    the rule word one edit away (`folowing` → `follow`), unless it is a protected
//!    ordinary word (`attach` is not `attack`).
//!
//! Every output character remembers the byte range of the input it came from, so a
//! match in the normalised text is quoted to staff exactly as the citizen wrote it.

use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, MatchKind};

/// Input beyond this many bytes is not examined: it bounds the cost of one message
/// (4,000 Chinese characters are 12,000 bytes) whatever a client sends.
pub(crate) const MAX_INPUT_BYTES: usize = 24 * 1024;

/// One character of normalised text and the input bytes it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fc {
    pub c: char,
    pub s: u32,
    pub e: u32,
    /// 1-based index into the replacement notes, 0 when the character is not the result
    /// of a replacement.
    pub note: u16,
}

/// Why a stretch of text was rewritten before matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoteKind {
    Typo,
    Pinyin,
}

/// A rewrite, kept to explain a match that depends on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Note {
    pub kind: NoteKind,
    pub orig_start: usize,
    pub orig_end: usize,
    pub to: String,
}

/// A normalised message.
#[derive(Debug, Default)]
pub(crate) struct Normalised {
    pub text: String,
    /// For each character of `text`: its byte offset in `text` and its input range.
    pub starts: Vec<u32>,
    pub spans: Vec<(u32, u32)>,
    pub notes: Vec<Note>,
    /// Byte offsets in `text` of the first character of every unit (a Han character, or
    /// a run of other letters and digits); distances between a modifier and a signal
    /// are counted in units.
    pub unit_starts: Vec<u32>,
}

impl Normalised {
    /// Index of the character starting at or containing byte `pos` of `text`.
    fn char_at(&self, pos: usize) -> usize {
        self.starts
            .partition_point(|&s| s as usize <= pos)
            .saturating_sub(1)
    }

    /// Input byte range for the normalised byte range `[s, e)`.
    pub fn orig_range(&self, s: usize, e: usize) -> (usize, usize) {
        if self.spans.is_empty() || e <= s {
            return (0, 0);
        }
        let first = self.char_at(s);
        let last = self.char_at(e - 1);
        (self.spans[first].0 as usize, self.spans[last].1 as usize)
    }

    /// Number of units that start in `[a, b)`.
    pub fn units_between(&self, a: usize, b: usize) -> usize {
        if b <= a {
            return 0;
        }
        let lo = self.unit_starts.partition_point(|&u| (u as usize) < a);
        let hi = self.unit_starts.partition_point(|&u| (u as usize) < b);
        hi - lo
    }

    /// Notes whose rewritten text overlaps the normalised range `[s, e)`.
    pub fn notes_in(&self, s: usize, e: usize) -> Vec<usize> {
        let (os, oe) = self.orig_range(s, e);
        let mut out = Vec::new();
        for (i, n) in self.notes.iter().enumerate() {
            if n.orig_start < oe && os < n.orig_end {
                out.push(i);
            }
        }
        out
    }
}

/// True for Han ideographs (CJK unified ideographs, extensions and compatibility block).
pub(crate) fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Characters that belong to a Latin word for matching and boundaries.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '\''
}

/// Characters that are dropped outright: they are invisible and are sometimes used,
/// deliberately or by keyboards, inside words (`救\u{200b}命`).
fn is_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0xE0000..=0xE0FFF)
}

/// Step 1: character folding. Never fails; output is at most a few characters per
/// input character.
pub(crate) fn fold(text: &str) -> Vec<Fc> {
    let text = truncate(text, MAX_INPUT_BYTES);
    let mut out: Vec<Fc> = Vec::with_capacity(text.len());
    // Pending whitespace: (is newline, start, end).
    let mut ws: Option<(bool, u32, u32)> = None;
    let mut any_han = false;
    for (i, ch) in text.char_indices() {
        let s = i as u32;
        let e = (i + ch.len_utf8()) as u32;
        if is_ignorable(ch) {
            continue;
        }
        let newline = matches!(ch, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
        if newline || ch.is_whitespace() || ch.is_control() {
            ws = Some(match ws {
                Some((nl, ws_s, _)) => (nl || newline, ws_s, e),
                None => (newline, s, e),
            });
            continue;
        }
        let ch = match ch as u32 {
            0xFF01..=0xFF5E => char::from_u32(ch as u32 - 0xFEE0).unwrap_or(ch),
            _ => match ch {
                '‘' | '’' | '′' | '`' | '´' => '\'',
                '“' | '”' | '″' => '"',
                _ => ch,
            },
        };
        if let Some((nl, ws_s, ws_e)) = ws.take() {
            if let Some(prev) = out.last() {
                let drop_space = !nl && is_han(prev.c) && is_han(ch);
                if !drop_space {
                    out.push(Fc {
                        c: if nl { '\n' } else { ' ' },
                        s: ws_s,
                        e: ws_e,
                        note: 0,
                    });
                }
            }
        }
        any_han |= is_han(ch);
        if ch.is_ascii() {
            out.push(Fc {
                c: ch.to_ascii_lowercase(),
                s,
                e,
                note: 0,
            });
        } else {
            for lc in ch.to_lowercase() {
                out.push(Fc {
                    c: lc,
                    s,
                    e,
                    note: 0,
                });
            }
        }
    }
    squeeze_letter_runs(&mut out);
    if any_han {
        to_simplified(&mut out);
    }
    out
}

/// Cuts `text` to at most `max` bytes at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Runs of three or more identical ASCII letters become one letter spanning the run.
fn squeeze_letter_runs(chars: &mut Vec<Fc>) {
    let mut out: Vec<Fc> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j].c == c.c {
            j += 1;
        }
        let run = j - i;
        if run >= 3 && c.c.is_ascii_lowercase() {
            out.push(Fc {
                e: chars[j - 1].e,
                ..c
            });
        } else {
            out.extend_from_slice(&chars[i..j]);
        }
        i = j;
    }
    *chars = out;
}

/// Traditional → Simplified, character by character with fast2s's neighbour rules.
fn to_simplified(chars: &mut [Fc]) {
    let s: String = chars.iter().map(|f| f.c).collect();
    let conv = fast2s::convert(&s);
    if conv.chars().count() != chars.len() {
        return;
    }
    for (f, c) in chars.iter_mut().zip(conv.chars()) {
        f.c = c;
    }
}

/// Table-driven rewrites (typos, homophones, typed pinyin), compiled once.
pub(crate) struct Rewriter {
    ac: Option<AhoCorasick>,
    /// Per automaton pattern: replacement, kind, and whether the source must be a whole
    /// Latin word sequence.
    to: Vec<(Vec<char>, NoteKind, bool)>,
}

impl Rewriter {
    /// `entries`: (source as typed, already folded; replacement, already folded; kind).
    pub fn new(entries: Vec<(String, String, NoteKind)>) -> Result<Self, String> {
        if entries.is_empty() {
            return Ok(Rewriter {
                ac: None,
                to: Vec::new(),
            });
        }
        let mut pats = Vec::with_capacity(entries.len());
        let mut to = Vec::with_capacity(entries.len());
        for (from, repl, kind) in entries {
            let latin = from.chars().next().is_some_and(is_word_char)
                || from.chars().last().is_some_and(is_word_char);
            pats.push(from);
            to.push((repl.chars().collect(), kind, latin));
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&pats)
            .map_err(|e| e.to_string())?;
        Ok(Rewriter { ac: Some(ac), to })
    }

    /// Step 2: applies the table; appends a note for every rewrite.
    pub fn apply(&self, chars: Vec<Fc>, notes: &mut Vec<Note>) -> Vec<Fc> {
        let Some(ac) = &self.ac else {
            return drop_han_spaces(chars);
        };
        let text: String = chars.iter().map(|f| f.c).collect();
        if ac.find(&text).is_none() {
            return drop_han_spaces(chars);
        }
        let mut byte_to_idx = Vec::with_capacity(chars.len() + 1);
        for (i, (b, _)) in text.char_indices().enumerate() {
            byte_to_idx.push((b, i));
        }
        let idx_of = |b: usize| -> usize {
            match byte_to_idx.binary_search_by_key(&b, |&(bb, _)| bb) {
                Ok(k) => byte_to_idx[k].1,
                Err(_) => chars.len(),
            }
        };
        let mut out: Vec<Fc> = Vec::with_capacity(chars.len());
        let mut next = 0usize; // next char index not yet copied
        for m in ac.find_iter(&text) {
            let (repl, kind, latin) = &self.to[m.pattern().as_usize()];
            if *latin {
                let before = text[..m.start()].chars().next_back();
                let after = text[m.end()..].chars().next();
                if before.is_some_and(is_word_char) || after.is_some_and(is_word_char) {
                    continue;
                }
            }
            let a = idx_of(m.start());
            let b = idx_of(m.end());
            if a < next || b <= a || b > chars.len() {
                continue;
            }
            out.extend_from_slice(&chars[next..a]);
            let (os, oe) = (chars[a].s, chars[b - 1].e);
            if notes.len() < u16::MAX as usize {
                notes.push(Note {
                    kind: *kind,
                    orig_start: os as usize,
                    orig_end: oe as usize,
                    to: repl.iter().collect(),
                });
            }
            let note = notes.len().min(u16::MAX as usize) as u16;
            for &c in repl {
                out.push(Fc {
                    c,
                    s: os,
                    e: oe,
                    note,
                });
            }
            next = b;
        }
        out.extend_from_slice(&chars[next..]);
        drop_han_spaces(out)
    }
}

/// A space between two Han characters (left after pinyin became Han) is dropped.
fn drop_han_spaces(chars: Vec<Fc>) -> Vec<Fc> {
    if chars.len() < 3 || !chars.iter().any(|f| f.c == ' ') {
        return chars;
    }
    let mut out = Vec::with_capacity(chars.len());
    for i in 0..chars.len() {
        let c = chars[i];
        if c.c == ' '
            && i > 0
            && i + 1 < chars.len()
            && is_han(chars[i - 1].c)
            && is_han(chars[i + 1].c)
        {
            continue;
        }
        out.push(c);
    }
    out
}

/// English suffix stripping, deliberately simple: rule terms and messages go through
/// the same function, so only consistency matters, not linguistic accuracy.
pub(crate) fn stem<'a>(word: &'a str, exceptions: &HashSet<String>) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    let b = word.as_bytes();
    if b.len() <= 3 || !b.iter().all(|c| c.is_ascii_lowercase()) || exceptions.contains(word) {
        return Cow::Borrowed(word);
    }
    let mut s: String = word.to_string();
    // Plurals and third person.
    if s.ends_with("ies") && s.len() > 4 {
        s.truncate(s.len() - 3);
        s.push('y');
    } else if s.ends_with("es")
        && ["sh", "ch", "x", "ss", "zz"]
            .iter()
            .any(|t| s[..s.len() - 2].ends_with(t))
    {
        s.truncate(s.len() - 2);
    } else if s.ends_with('s') && !s.ends_with("ss") && !s.ends_with("us") && !s.ends_with("is") {
        s.truncate(s.len() - 1);
    }
    // Past tense and gerund.
    let has_vowel = |t: &str| t.bytes().any(|c| b"aeiouy".contains(&c));
    if s.ends_with("ied") && s.len() > 4 {
        s.truncate(s.len() - 3);
        s.push('y');
    } else if s.ends_with("ed") && !s.ends_with("eed") {
        let base = &s[..s.len() - 2];
        if base.len() >= 3 && has_vowel(base) {
            s.truncate(s.len() - 2);
            undouble(&mut s);
        }
    } else if s.ends_with("ing") {
        let base = &s[..s.len() - 3];
        if base.len() >= 3 && has_vowel(base) {
            s.truncate(s.len() - 3);
            undouble(&mut s);
        }
    }
    if s.len() >= 5 && s.ends_with('e') && !s.ends_with("ee") {
        s.truncate(s.len() - 1);
    }
    if s == word {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(s)
    }
}

/// `kidnapp` → `kidnap`, but `kill`, `miss` and `buzz` keep their double letter.
fn undouble(s: &mut String) {
    let b = s.as_bytes();
    let n = b.len();
    if n >= 2
        && b[n - 1] == b[n - 2]
        && !b"lsz".contains(&b[n - 1])
        && b[n - 1].is_ascii_lowercase()
    {
        s.truncate(n - 1);
    }
}

/// Damerau–Levenshtein distance, capped: returns `cap + 1` as soon as it is exceeded.
pub(crate) fn edit_distance(a: &[u8], b: &[u8], cap: usize) -> usize {
    if a.len().abs_diff(b.len()) > cap {
        return cap + 1;
    }
    let n = b.len();
    let mut prev2 = vec![0usize; n + 1];
    let mut prev: Vec<usize> = (0..=n).collect();
    let mut cur = vec![0usize; n + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=n {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > cap {
            return cap + 1;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[n]
}

/// Rule words a misspelt message word may be corrected to.
#[derive(Default)]
pub(crate) struct TypoIndex {
    /// Stemmed rule words, any length (a word already in here is never corrected).
    pub vocab: HashSet<String>,
    /// Stemmed rule words long enough to be correction targets.
    targets: Vec<String>,
    /// Every single-deletion variant (and the word itself) → target indices.
    deletes: HashMap<String, Vec<u32>>,
    /// Ordinary words that look like a rule word with one letter changed.
    pub protected: HashSet<String>,
    pub min_len: usize,
}

impl TypoIndex {
    /// `vocab`: every rule word (never corrected); `targets`: the words a misspelling
    /// may be corrected to (signal and pattern words, not modifier markers: a typo can
    /// only create a signal, never silently cancel one).
    pub fn new(
        vocab: HashSet<String>,
        targets: &HashSet<String>,
        protected: HashSet<String>,
        min_len: usize,
    ) -> Self {
        let mut targets: Vec<String> = targets
            .iter()
            .filter(|w| w.len() >= min_len && w.bytes().all(|c| c.is_ascii_lowercase()))
            .cloned()
            .collect();
        targets.sort();
        let mut deletes: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, w) in targets.iter().enumerate() {
            for v in deletion_variants(w) {
                deletes.entry(v).or_default().push(i as u32);
            }
        }
        for v in deletes.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        TypoIndex {
            vocab,
            targets,
            deletes,
            protected,
            min_len,
        }
    }

    /// The rule word `word` is a one-edit misspelling of, if there is exactly one.
    /// Targets have at least `min_len` letters, so the word at least one less.
    pub fn correct(&self, word: &str) -> Option<&str> {
        if word.len() + 1 < self.min_len
            || word.len() > 24
            || self.vocab.contains(word)
            || self.protected.contains(word)
            || !word.bytes().all(|c| c.is_ascii_lowercase())
        {
            return None;
        }
        let mut cands: Vec<u32> = Vec::new();
        // Deletion variants are built in one reused buffer: most words have no
        // candidate at all, and this runs for every long word of every message.
        let mut buf = String::with_capacity(word.len());
        for i in 0..=word.len() {
            buf.clear();
            if i == word.len() {
                buf.push_str(word);
            } else {
                buf.push_str(&word[..i]);
                buf.push_str(&word[i + 1..]);
            }
            if let Some(ids) = self.deletes.get(buf.as_str()) {
                cands.extend_from_slice(ids);
            }
        }
        cands.sort_unstable();
        cands.dedup();
        let mut found: Option<&str> = None;
        for id in cands {
            let t = &self.targets[id as usize];
            if edit_distance(word.as_bytes(), t.as_bytes(), 1) <= 1 {
                if found.is_some() {
                    return None; // ambiguous
                }
                found = Some(t);
            }
        }
        found
    }
}

/// The word itself and every string obtained by deleting one byte (ASCII only).
fn deletion_variants(w: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(w.len() + 1);
    out.push(w.to_string());
    for i in 0..w.len() {
        let mut s = String::with_capacity(w.len());
        s.push_str(&w[..i]);
        s.push_str(&w[i + 1..]);
        out.push(s);
    }
    out
}

/// Step 3 and assembly: stems Latin words (and corrects typos when `typos` is given),
/// then builds the final text with its offset maps.
pub(crate) fn finish(
    chars: Vec<Fc>,
    mut notes: Vec<Note>,
    stem_exceptions: &HashSet<String>,
    typos: Option<&TypoIndex>,
) -> Normalised {
    let mut out: Vec<Fc> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].c.is_ascii_alphanumeric() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && is_word_char(chars[j].c) {
            j += 1;
        }
        // A trailing apostrophe is not part of the word.
        let mut k = j;
        while k > i + 1 && chars[k - 1].c == '\'' {
            k -= 1;
        }
        let word: String = chars[i..k].iter().map(|f| f.c).collect();
        let stemmed = stem(&word, stem_exceptions);
        let corrected = typos.and_then(|t| {
            if t.vocab.contains(stemmed.as_ref()) || t.protected.contains(&word) {
                None
            } else {
                t.correct(&stemmed).or_else(|| t.correct(&word))
            }
        });
        let (os, oe) = (chars[i].s, chars[k - 1].e);
        if let Some(fix) = corrected {
            notes.push(Note {
                kind: NoteKind::Typo,
                orig_start: os as usize,
                orig_end: oe as usize,
                to: fix.to_string(),
            });
            let note = notes.len().min(u16::MAX as usize) as u16;
            for c in fix.chars() {
                out.push(Fc {
                    c,
                    s: os,
                    e: oe,
                    note,
                });
            }
        } else if stemmed.as_ref() == word {
            out.extend_from_slice(&chars[i..k]);
        } else {
            let st: Vec<char> = stemmed.chars().collect();
            let n = st.len();
            for (p, &c) in st.iter().enumerate() {
                let src = chars[i + p.min(k - i - 1)];
                out.push(Fc {
                    c,
                    s: src.s,
                    e: if p + 1 == n { oe } else { src.e },
                    note: src.note,
                });
            }
        }
        out.extend_from_slice(&chars[k..j]);
        i = j;
    }
    let mut n = Normalised {
        text: String::with_capacity(out.len() * 2),
        starts: Vec::with_capacity(out.len()),
        spans: Vec::with_capacity(out.len()),
        notes: Vec::new(),
        unit_starts: Vec::new(),
    };
    n.notes = std::mem::take(&mut notes);
    let mut prev_alnum = false;
    for f in &out {
        let pos = n.text.len() as u32;
        n.starts.push(pos);
        n.spans.push((f.s, f.e));
        n.text.push(f.c);
        let han = is_han(f.c);
        let alnum = !han && f.c.is_alphanumeric();
        if han || (alnum && !prev_alnum) {
            n.unit_starts.push(pos);
        }
        prev_alnum = alnum || (prev_alnum && f.c == '\'');
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(s: &str) -> String {
        fold(s).iter().map(|f| f.c).collect()
    }

    #[test]
    fn fold_full_width_case_and_spaces() {
        assert_eq!(folded("ＨＥＬＰ　ｍｅ！"), "help me!");
        assert_eq!(folded("  Help\t\t me  "), "help me");
        assert_eq!(folded("救 命"), "救命");
        assert_eq!(folded("help 我"), "help 我");
        assert_eq!(folded("a\r\n\nb"), "a\nb");
    }

    #[test]
    fn fold_drops_invisible_and_control_characters() {
        assert_eq!(folded("救\u{200b}命"), "救命");
        assert_eq!(folded("a\u{0}b"), "a b");
        assert_eq!(folded("\u{feff}\u{202e}sos"), "sos");
    }

    #[test]
    fn fold_traditional_to_simplified() {
        assert_eq!(folded("綁架 護照 搶劫"), "绑架护照抢劫");
    }

    #[test]
    fn fold_squeezes_letter_runs() {
        assert_eq!(folded("heeeelp HELPPPP"), "help help");
        assert_eq!(folded("sooos"), "sos");
        assert_eq!(folded("coffee"), "coffee");
    }

    #[test]
    fn fold_keeps_input_offsets() {
        let text = "Ａb 救";
        let f = fold(text);
        assert_eq!(f[0].c, 'a');
        assert_eq!(&text[f[0].s as usize..f[0].e as usize], "Ａ");
        let last = f.last().unwrap();
        assert_eq!(&text[last.s as usize..last.e as usize], "救");
    }

    #[test]
    fn stemming() {
        let ex: HashSet<String> = ["news".to_string()].into_iter().collect();
        let st = |w: &str| stem(w, &ex).into_owned();
        assert_eq!(st("followed"), "follow");
        assert_eq!(st("following"), "follow");
        assert_eq!(st("follows"), "follow");
        assert_eq!(st("robbed"), "rob");
        assert_eq!(st("kidnapped"), "kidnap");
        assert_eq!(st("killing"), "kill");
        assert_eq!(st("missing"), "miss");
        assert_eq!(st("parties"), "party");
        assert_eq!(st("tried"), "try");
        assert_eq!(st("bleeding"), "bleed");
        assert_eq!(st("need"), "need");
        assert_eq!(st("news"), "news");
        assert_eq!(st("this"), "this");
        assert_eq!(st("phones"), st("phone"));
        assert_eq!(st("chased"), st("chase"));
        assert_eq!(st("don't"), "don't");
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance(b"stolne", b"stolen", 1), 1);
        assert_eq!(edit_distance(b"folow", b"follow", 1), 1);
        assert_eq!(edit_distance(b"kidnap", b"kidnap", 1), 0);
        assert!(edit_distance(b"abcdef", b"abxdyf", 1) > 1);
    }

    #[test]
    fn typo_index_corrects_one_edit_and_respects_protection() {
        let vocab: HashSet<String> = ["follow", "attack", "kidnap", "rob"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let protected: HashSet<String> = ["attach".to_string()].into_iter().collect();
        let t = TypoIndex::new(vocab.clone(), &vocab, protected, 6);
        assert_eq!(t.correct("folow"), Some("follow"));
        assert_eq!(t.correct("atack"), Some("attack"));
        assert_eq!(t.correct("attach"), None);
        assert_eq!(t.correct("kidnap"), None, "already a rule word");
        assert_eq!(t.correct("robe"), None, "too short to correct");
        assert_eq!(t.correct("rob"), None);
        assert_eq!(t.correct("window"), None);
    }

    #[test]
    fn rewriter_applies_typos_and_whole_word_pinyin() {
        let rw = Rewriter::new(vec![
            ("抢节".into(), "抢劫".into(), NoteKind::Typo),
            ("jiuming".into(), "救命".into(), NoteKind::Pinyin),
            ("bei qiang".into(), "被抢".into(), NoteKind::Pinyin),
        ])
        .unwrap();
        let run = |s: &str| {
            let mut notes = Vec::new();
            let out = rw.apply(fold(s), &mut notes);
            (out.iter().map(|f| f.c).collect::<String>(), notes.len())
        };
        assert_eq!(run("我被抢节了"), ("我被抢劫了".to_string(), 1));
        assert_eq!(
            run("jiuming wo bei qiang le"),
            ("救命 wo 被抢 le".to_string(), 2)
        );
        assert_eq!(run("xjiuming"), ("xjiuming".to_string(), 0));
        assert_eq!(run("jiuming 救命"), ("救命救命".to_string(), 1));
    }

    #[test]
    fn finish_maps_back_to_input() {
        let text = "He FOLLOWED me";
        let n = finish(fold(text), Vec::new(), &HashSet::new(), None);
        assert_eq!(n.text, "he follow me");
        let s = n.text.find("follow").unwrap();
        let (os, oe) = n.orig_range(s, s + "follow".len());
        assert_eq!(&text[os..oe], "FOLLOWED");
        assert_eq!(n.units_between(0, n.text.len()), 3);
    }
}
