//! HTML-safe highlighted excerpts. Written here rather than with tantivy's
//! `SnippetGenerator` because matches come from several fields at once (words, Han
//! grams, pinyin, fuzzy expansions, synonyms) and the output must escape all article
//! text, which is untrusted.

use crate::analysis::{
    edit_distance_within, joined_pinyin, runs, to_simplified, RunKind, Segmenter, WordStems,
};
use crate::query::Highlight;

/// Maximum visible characters of a snippet (ellipses excluded).
pub(crate) const SNIPPET_CHARS: usize = 160;
/// Characters of context kept before the first match in the window.
const LEAD_CHARS: usize = 24;
/// Only the beginning of very long texts is scanned for matches.
const MAX_SCAN_BYTES: usize = 32 * 1024;

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Byte ranges of matches in `text`, sorted and merged.
fn spans(text: &str, h: &Highlight) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let simplified = to_simplified(text);
    for s in &h.han {
        for (i, m) in simplified.match_indices(s.as_str()) {
            out.push((i, i + m.len()));
        }
    }
    let words = !h.exact.is_empty() || !h.fuzzy.is_empty() || !h.prefix.is_empty();
    let pinyin = !h.pinyin.is_empty();
    if words || pinyin {
        // The same tokens the word analyzer indexes, computed only where a match can
        // come from: Han runs are segmented only for pinyin, Latin words are stemmed
        // once per distinct word.
        let mut seg = pinyin.then(Segmenter::global);
        let mut stems = WordStems::new();
        for (s, e, kind) in runs(text) {
            match kind {
                RunKind::Han => {
                    let Some(seg) = seg.as_mut() else { continue };
                    let run = &*to_simplified(&text[s..e]);
                    seg.segment(run, |a, b| {
                        let word = &run[a..b];
                        if word.chars().count() >= 2 && h.pinyin.contains(&joined_pinyin(word)) {
                            out.push((s + a, s + b));
                        }
                    });
                }
                RunKind::Word if words => {
                    let lower = text[s..e].to_lowercase();
                    let Some(term) = stems.stem(&lower) else {
                        continue;
                    };
                    let hit = h.exact.contains(term)
                        || h.prefix.iter().any(|p| lower.starts_with(p.as_str()))
                        || (term.bytes().all(|b| b.is_ascii_alphabetic())
                            && h.fuzzy
                                .iter()
                                .any(|(t, d)| edit_distance_within(term, t, *d)));
                    if hit {
                        out.push((s, e));
                    }
                }
                RunKind::Word => {}
            }
        }
    }
    out.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(out.len());
    for (s, e) in out {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => out.push(c),
    }
}

/// Renders `text` between char indices with marks; whitespace runs collapse to one space.
fn render(
    text: &str,
    spans_chars: &[(usize, usize)],
    ws: usize,
    we: usize,
    total: usize,
) -> String {
    let mut out = String::with_capacity((we - ws) * 3 + 32);
    if ws > 0 {
        out.push('…');
    }
    let mut span_iter = spans_chars
        .iter()
        .filter(|(s, e)| *e > ws && *s < we)
        .peekable();
    let mut in_mark = false;
    let mut last_space = true;
    for (ci, c) in text.chars().enumerate().skip(ws).take(we - ws) {
        if let Some(&&(s, e)) = span_iter.peek() {
            if !in_mark && ci >= s && ci < e {
                out.push_str("<mark>");
                in_mark = true;
            }
        }
        if c.is_whitespace() {
            if !last_space && !in_mark {
                out.push(' ');
                last_space = true;
            } else if in_mark {
                out.push(' ');
            }
        } else {
            escape_into(&mut out, c);
            last_space = false;
        }
        if in_mark {
            if let Some(&&(_, e)) = span_iter.peek() {
                if ci + 1 >= e || ci + 1 >= we {
                    out.push_str("</mark>");
                    in_mark = false;
                    span_iter.next();
                }
            }
        }
    }
    if in_mark {
        out.push_str("</mark>");
    }
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    if we < total {
        out.push('…');
    }
    out
}

/// The excerpt of `text` (≤ [`SNIPPET_CHARS`] characters) containing the most matches.
fn excerpt(text: &str, byte_spans: &[(usize, usize)]) -> String {
    let char_starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let total = char_starts.len();
    let to_char = |b: usize| char_starts.partition_point(|&x| x < b);
    let spans_chars: Vec<(usize, usize)> = byte_spans
        .iter()
        .map(|&(s, e)| (to_char(s), to_char(e)))
        .collect();
    let mut best_ws = 0;
    let mut best_count = 0;
    for &(s, _) in &spans_chars {
        let ws = s.saturating_sub(LEAD_CHARS);
        let we = ws + SNIPPET_CHARS;
        let count = spans_chars
            .iter()
            .filter(|(a, b)| *a >= ws && *b <= we)
            .count();
        if count > best_count {
            best_count = count;
            best_ws = ws;
        }
    }
    let mut ws = best_ws;
    if ws + SNIPPET_CHARS > total {
        ws = total.saturating_sub(SNIPPET_CHARS);
    }
    let we = (ws + SNIPPET_CHARS).min(total);
    render(text, &spans_chars, ws, we, total)
}

/// Snippet from the body, or from the summary when the body has no match.
pub(crate) fn make(body: &str, summary: &str, h: &Highlight) -> String {
    let mut fallback: Option<&str> = None;
    for text in [body, summary] {
        if text.trim().is_empty() {
            continue;
        }
        let scan = &text[..floor_char_boundary(text, MAX_SCAN_BYTES)];
        let s = spans(scan, h);
        if !s.is_empty() {
            return excerpt(scan, &s);
        }
        // Without any match, the editorial summary reads better than the body's start.
        fallback = Some(scan);
    }
    match fallback {
        Some(t) => excerpt(t, &[]),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hl(exact: &[&str], han: &[&str]) -> Highlight {
        Highlight {
            exact: exact.iter().map(|s| s.to_string()).collect(),
            han: han.iter().map(|s| s.to_string()).collect(),
            ..Highlight::default()
        }
    }

    #[test]
    fn marks_and_escapes() {
        let s = make(
            "Beware <script>alert(1)</script> & report your lost passport.",
            "",
            &hl(&["passport"], &[]),
        );
        assert_eq!(
            s,
            "Beware &lt;script&gt;alert(1)&lt;/script&gt; &amp; report your lost <mark>passport</mark>."
        );
    }

    #[test]
    fn chinese_window_does_not_split_characters() {
        let body =
            "前言。".repeat(100) + "如护照遗失，请立即报警并联系使馆。" + &"后记。".repeat(100);
        let s = make(&body, "", &hl(&[], &["护照", "遗失"]));
        assert!(
            s.contains("<mark>护照</mark><mark>遗失</mark>") || s.contains("<mark>护照遗失</mark>"),
            "{s}"
        );
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        let visible = s.replace("<mark>", "").replace("</mark>", "");
        assert!(
            visible.chars().count() <= SNIPPET_CHARS + 2,
            "{}",
            visible.chars().count()
        );
    }

    #[test]
    fn falls_back_to_summary_then_start() {
        let s = make("nothing here", "summary with visa", &hl(&["visa"], &[]));
        assert_eq!(s, "summary with <mark>visa</mark>");
        let s = make("nothing here", "", &hl(&["visa"], &[]));
        assert_eq!(s, "nothing here");
    }
}
