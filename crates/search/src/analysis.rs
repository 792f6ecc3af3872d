//! Text analysis shared by indexing, querying and snippet highlighting.
//!
//! Three tantivy tokenizers are registered on every index:
//! * [`WORD`]: Han runs segmented by jieba (default mode), other letter/digit runs
//!   lowercased; the registered analyzer then applies tantivy's English `Stemmer`.
//! * [`GRAM`]: Han character unigrams and bigrams, so partial words and segmentation
//!   disagreements between query and document still match.
//! * [`PINYIN`]: toneless pinyin of every jieba word, both joined (`huzhao`) and per
//!   syllable (`hu`, `zhao`), so Latin-keyboard users can search Chinese articles.
//!
//! Whitespace, punctuation, emoji and Markdown symbols never become tokens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use pinyin::{ToPinyin, ToPinyinMulti};
use tantivy::tokenizer::{
    Language, RawTokenizer, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};
use tantivy_jieba::jieba_rs::Jieba;
use tantivy_jieba::JiebaTokenizer;

/// Name under which the word analyzer (jieba + lowercase + English stemmer) is registered.
pub(crate) const WORD: &str = "lingshi_word";
/// Name under which the Han unigram/bigram tokenizer is registered.
pub(crate) const GRAM: &str = "lingshi_gram";
/// Name under which the pinyin tokenizer is registered.
pub(crate) const PINYIN: &str = "lingshi_pinyin";

/// Tokens longer than this are junk (base64, URLs glued together, hostile input) and are
/// dropped so they cannot bloat the term dictionary.
const MAX_TOKEN_BYTES: usize = 48;

/// True for Han ideographs (CJK unified ideographs, extensions and compatibility block).
pub(crate) fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Characters that form non-Han words (Latin, digits, Cyrillic, kana, Hangul, ...).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_han(c)
}

/// Traditional → Simplified Chinese, character by character (fast2s). Applied to both
/// documents and queries, so `護照` and `护照` are the same word, and byte offsets are
/// kept (every mapped character is 3 bytes in UTF-8, like its source); when a mapping
/// would change the length the text is returned unchanged.
pub(crate) fn to_simplified(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_han) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut conv = fast2s::convert(text);
    // fast2s keeps the older simplified form 谘 for 諮; 咨 is the one in use (咨询).
    if conv.contains('谘') {
        conv = conv.replace('谘', "咨");
    }
    if conv.len() == text.len() && conv != text {
        std::borrow::Cow::Owned(conv)
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Kind of a contiguous run of word characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunKind {
    Han,
    Word,
}

/// Splits text into byte ranges of Han runs and other word runs; everything else
/// (whitespace, punctuation, symbols, emoji) separates runs and is dropped.
pub(crate) fn runs(text: &str) -> Vec<(usize, usize, RunKind)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, RunKind)> = None;
    for (i, c) in text.char_indices() {
        let kind = if is_han(c) {
            Some(RunKind::Han)
        } else if is_word_char(c) {
            Some(RunKind::Word)
        } else {
            None
        };
        match (cur, kind) {
            (Some((_, k)), Some(nk)) if k == nk => {}
            (Some((s, k)), nk) => {
                out.push((s, i, k));
                cur = nk.map(|nk| (i, nk));
            }
            (None, nk) => cur = nk.map(|nk| (i, nk)),
        }
    }
    if let Some((s, k)) = cur {
        out.push((s, text.len(), k));
    }
    out
}

/// The jieba instance used for a tokenizer. Indexing uses tantivy-jieba's global
/// dictionary; queries use a private copy with the synonym words added so that a
/// synonym such as `丢了` survives segmentation as one unit.
#[derive(Clone)]
pub(crate) enum Segmenter {
    /// tantivy-jieba's tokenizer over its global default dictionary (default mode).
    Global(Box<JiebaTokenizer>),
    /// A customised dictionary, shared cheaply between clones.
    Custom(Arc<Jieba>),
}

impl Segmenter {
    /// The segmenter used for documents.
    pub(crate) fn global() -> Self {
        Segmenter::Global(Box::new(JiebaTokenizer::with_search_mode(false)))
    }

    /// Calls `f(start, end)` with byte offsets (relative to `run`) of each jieba word.
    pub(crate) fn segment(&mut self, run: &str, mut f: impl FnMut(usize, usize)) {
        match self {
            Segmenter::Global(tok) => {
                let mut ts = tok.token_stream(run);
                while ts.advance() {
                    let t = ts.token();
                    f(t.offset_from, t.offset_to);
                }
            }
            Segmenter::Custom(jieba) => {
                for t in jieba.cut(run, true) {
                    f(t.byte_start, t.byte_end);
                }
            }
        }
    }
}

/// A token stream over tokens computed eagerly; analysis needs look-around (runs,
/// jieba) that does not fit a lazy stream.
pub(crate) struct VecTokenStream {
    tokens: Vec<Token>,
    cur: usize,
    started: bool,
    empty: Token,
}

impl VecTokenStream {
    fn new(tokens: Vec<Token>) -> Self {
        VecTokenStream {
            tokens,
            cur: 0,
            started: false,
            empty: Token::default(),
        }
    }
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        if self.started {
            self.cur += 1;
        } else {
            self.started = true;
        }
        self.cur < self.tokens.len()
    }

    fn token(&self) -> &Token {
        self.tokens.get(self.cur).unwrap_or(&self.empty)
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.tokens.get_mut(self.cur) {
            Some(t) => t,
            None => &mut self.empty,
        }
    }
}

fn push(out: &mut Vec<Token>, text: String, from: usize, to: usize) {
    if text.is_empty() || text.len() > MAX_TOKEN_BYTES {
        return;
    }
    let position = out.len();
    out.push(Token {
        offset_from: from,
        offset_to: to,
        position,
        text,
        position_length: 1,
    });
}

/// Lowercased words: jieba words for Han runs, whole runs otherwise (before stemming).
pub(crate) fn word_tokens(text: &str, seg: &mut Segmenter) -> Vec<Token> {
    let mut out = Vec::new();
    for (s, e, kind) in runs(text) {
        let orig = &text[s..e];
        match kind {
            RunKind::Han => {
                let run = &*to_simplified(orig);
                seg.segment(run, |a, b| {
                    push(&mut out, run[a..b].to_string(), s + a, s + b);
                })
            }
            RunKind::Word => push(&mut out, orig.to_lowercase(), s, e),
        }
    }
    out
}

/// Word tokenizer (stemming is added by [`word_analyzer`]).
#[derive(Clone)]
pub(crate) struct WordTokenizer {
    seg: Segmenter,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = VecTokenStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::new(word_tokens(text, &mut self.seg))
    }
}

/// The full word analyzer: segmentation, lowercasing and tantivy's English stemmer.
/// The same chain (with a different dictionary) analyzes queries, so terms agree.
pub(crate) fn word_analyzer(seg: Segmenter) -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer { seg })
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The stem of one lowercased Latin word as the word analyzer would index it,
/// remembered per word: a snippet asks for the same words again and again, and
/// stemming every word of a body was most of a snippet's cost.
pub(crate) struct WordStems {
    analyzer: TextAnalyzer,
    memo: HashMap<String, Option<String>>,
}

impl WordStems {
    pub(crate) fn new() -> Self {
        WordStems {
            analyzer: TextAnalyzer::builder(RawTokenizer::default())
                .filter(Stemmer::new(Language::English))
                .build(),
            memo: HashMap::new(),
        }
    }

    /// `None` for a word the index drops (too long).
    pub(crate) fn stem(&mut self, lower: &str) -> Option<&str> {
        if !self.memo.contains_key(lower) {
            let stem = (lower.len() <= MAX_TOKEN_BYTES).then(|| {
                let mut ts = self.analyzer.token_stream(lower);
                if ts.advance() {
                    ts.token().text.clone()
                } else {
                    lower.to_string()
                }
            });
            self.memo.insert(lower.to_string(), stem);
        }
        self.memo.get(lower).and_then(|s| s.as_deref())
    }
}

/// Runs an analyzer and collects its tokens.
pub(crate) fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut ts = analyzer.token_stream(text);
    while ts.advance() {
        out.push(ts.token().clone());
    }
    out
}

/// Han unigrams and bigrams.
#[derive(Clone, Default)]
pub(crate) struct GramTokenizer;

impl Tokenizer for GramTokenizer {
    type TokenStream<'a> = VecTokenStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut out = Vec::new();
        for (s, e, kind) in runs(text) {
            if kind != RunKind::Han {
                continue;
            }
            let run = to_simplified(&text[s..e]);
            let chars: Vec<(usize, char)> = run.char_indices().collect();
            for (i, &(off, c)) in chars.iter().enumerate() {
                let from = s + off;
                let to = from + c.len_utf8();
                push(&mut out, c.to_string(), from, to);
                if let Some(&(off2, c2)) = chars.get(i + 1) {
                    let mut bigram = String::with_capacity(8);
                    bigram.push(c);
                    bigram.push(c2);
                    push(&mut out, bigram, from, s + off2 + c2.len_utf8());
                }
            }
        }
        VecTokenStream::new(out)
    }
}

/// Toneless pinyin syllables of a Han string (characters without a reading are skipped).
pub(crate) fn syllables(word: &str) -> Vec<&'static str> {
    word.to_pinyin().flatten().map(|p| p.plain()).collect()
}

/// Joined toneless pinyin of a Han string, e.g. `护照` → `huzhao`.
pub(crate) fn joined_pinyin(word: &str) -> String {
    syllables(word).concat()
}

/// Every reading of a Han word as joined toneless pinyin, heteronyms combined (the
/// usual reading first, at most `cap` readings): `亚的斯亚贝巴` is typed both
/// `yadesiyabeiba` and `yadisiyabeiba`.
pub(crate) fn pinyin_readings(word: &str, cap: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in word.chars() {
        let Some(multi) = c.to_pinyin_multi() else {
            continue;
        };
        let mut readings: Vec<&str> = Vec::new();
        for p in multi {
            if !readings.contains(&p.plain()) {
                readings.push(p.plain());
            }
        }
        let mut next = Vec::with_capacity(out.len() * readings.len());
        for prefix in &out {
            for r in &readings {
                if next.len() < cap {
                    next.push(format!("{prefix}{r}"));
                }
            }
        }
        out = next;
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Keyboards cannot type `ü`: index it both as `v` (the IME convention, `lvxing`) and as
/// `u` (what people write without an IME, `luxing`).
pub(crate) fn u_variants(p: &str) -> Vec<String> {
    if p.contains('ü') {
        vec![p.replace('ü', "v"), p.replace('ü', "u")]
    } else {
        vec![p.to_string()]
    }
}

/// Pinyin of each jieba word: joined form plus each syllable.
#[derive(Clone)]
pub(crate) struct PinyinTokenizer {
    seg: Segmenter,
}

impl PinyinTokenizer {
    pub(crate) fn new() -> Self {
        PinyinTokenizer {
            seg: Segmenter::global(),
        }
    }
}

impl Tokenizer for PinyinTokenizer {
    type TokenStream<'a> = VecTokenStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut out = Vec::new();
        for (s, e, kind) in runs(text) {
            if kind != RunKind::Han {
                continue;
            }
            let run = &*to_simplified(&text[s..e]);
            self.seg.segment(run, |a, b| {
                let syl = syllables(&run[a..b]);
                if syl.len() > 1 {
                    for v in u_variants(&syl.concat()) {
                        push(&mut out, v, s + a, s + b);
                    }
                }
                for x in syl {
                    for v in u_variants(x) {
                        push(&mut out, v, s + a, s + b);
                    }
                }
            });
        }
        VecTokenStream::new(out)
    }
}

/// The distinct pinyin forms (joined words and syllables) of the Han text in `text`,
/// for backends without pinyin analysis of their own.
pub(crate) fn pinyin_words(text: &str) -> Vec<String> {
    let mut tok = PinyinTokenizer::new();
    let mut ts = tok.token_stream(text);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while ts.advance() {
        let t = &ts.token().text;
        if seen.insert(t.clone()) {
            out.push(t.clone());
        }
    }
    out
}

/// Every toneless pinyin syllable, used to decide whether adjacent Latin query tokens
/// (`hu zhao`) may be joined into one pinyin word.
pub(crate) fn is_pinyin_syllable(s: &str) -> bool {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        (0x4E00u32..=0x9FFF)
            .filter_map(char::from_u32)
            .filter_map(|c| c.to_pinyin())
            .flat_map(|p| u_variants(p.plain()))
            // Consonant-only interjections (嗯 n, 呣 m, 哼 hng) would make almost any
            // English word "pinyin".
            .filter(|p| p.bytes().any(|b| b"aeiouv".contains(&b)))
            .collect()
    })
    .contains(s)
}

/// True when `s` splits entirely into pinyin syllables (`huzhao`, `yanglaojin`): such a
/// word is looked up in the pinyin fields; `passport` or `visa` is not.
pub(crate) fn is_pinyin_word(s: &str) -> bool {
    if s.is_empty() || s.len() > 48 || !s.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    // ok[i]: s[..i] splits into syllables. Syllables are at most 6 letters.
    let mut ok = vec![false; s.len() + 1];
    ok[0] = true;
    for i in 1..=s.len() {
        ok[i] = (i.saturating_sub(6)..i).any(|j| ok[j] && is_pinyin_syllable(&s[j..i]));
    }
    ok[s.len()]
}

/// Chinese question frames, fillers and function words, colloquial ones included
/// (`咋整`, `怎么弄`): dropped from queries. They are also added to the query-side
/// dictionary so that jieba keeps each one whole instead of leaving stray characters.
#[rustfmt::skip]
pub(crate) const ZH_STOPWORDS: &[&str] = &[
    "的", "了", "吗", "呢", "啊", "吧", "呀", "么", "嘛", "哦", "喔", "哈", "哎", "唉",
    "嗯", "啦", "咯", "呗", "是", "在", "我", "我的", "我们", "你", "您", "你们", "他",
    "她", "它", "他们", "她们", "自己", "人", "有人", "别人", "怎么", "怎么办", "怎么样",
    "怎样", "怎么弄", "怎么整", "怎么搞", "怎么回事", "怎么做", "咋", "咋办", "咋整",
    "咋弄", "咋搞", "咋回事", "咋个", "该怎么办", "应该怎么办", "怎么处理", "如何",
    "如何处理", "什么", "啥", "干啥", "请问", "请问一下", "问一下", "问问", "想问",
    "想问一下", "一下", "可以", "可不可以", "能", "能不能", "能否", "要", "需要",
    "要不要", "需不需要", "哪里", "哪儿", "哪", "在哪", "在哪里", "去哪", "去哪里",
    "哪个", "和", "与", "及", "或", "或者", "也", "都", "就", "还", "还是", "有",
    "有没有", "没有", "被", "把", "给", "对", "从", "到", "这", "那", "这个", "那个",
    "个", "该", "应该", "为什么", "请", "谢谢", "你好", "您好", "办", "去", "想",
    "会", "得", "地", "着", "过", "一个", "帮", "帮我", "帮忙", "帮帮我", "告诉",
    "告诉我", "知道", "我想", "我想知道", "让", "让我", "叫", "叫我", "现在", "刚才",
    "刚刚", "已经", "突然", "然后", "但是", "可是", "因为", "所以", "如果", "多少",
    "几", "是不是", "对不对", "行不行", "好不好", "怎么说", "一些", "东西", "事情",
    "情况", "问题", "这种", "那种", "一般", "那么", "这么", "全", "还能",
    "还要", "要求", "说", "说是", "里", "上", "下", "中", "时候", "的话", "吗？",
];

/// English question frames and function words ("what now", "can you tell me").
#[rustfmt::skip]
const EN_STOPWORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "with", "is",
    "are", "was", "were", "be", "been", "being", "do", "does", "did", "doing", "done",
    "how", "what", "whats", "where", "when", "which", "who", "whom", "whose", "why",
    "can", "could", "should", "would", "will", "shall", "may", "might", "must", "i",
    "me", "my", "mine", "myself", "we", "our", "ours", "you", "your", "yours", "he",
    "him", "his", "she", "her", "they", "them", "their", "it", "its", "this", "that",
    "these", "those", "there", "here", "please", "from", "by", "as", "about", "if",
    "so", "am", "get", "got", "getting", "gotten", "need", "needs", "needed", "want",
    "wants", "wanted", "help", "now", "t", "s", "m", "ve", "ll", "d", "re", "im",
    "ive", "dont", "doesnt", "didnt", "tell", "told", "telling", "know", "say", "says",
    "said", "ask", "asks", "asked", "asking", "someone", "somebody", "anyone",
    "anybody", "something", "anything", "everything", "hi", "hello", "hey", "thanks",
    "thank", "ok", "okay", "uh", "oh", "um", "hmm", "just", "really", "very", "some",
    "any", "all", "also", "then", "than", "too", "like", "have", "has", "had", "not",
    "no", "out", "up", "one", "let", "lets", "going", "gonna", "wanna", "still",
    "already", "yet", "even", "again", "into", "over", "before", "after", "during",
    "other", "another", "whether", "possible", "guy", "way", "thing", "things",
    "much", "many", "there", "last", "next", "week", "yesterday", "today", "now",
];

/// Query words that carry no meaning on their own in a helpdesk question; they are
/// dropped from queries (not from the index) unless nothing else is left.
pub(crate) fn is_stopword(raw: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| ZH_STOPWORDS.iter().chain(EN_STOPWORDS).copied().collect())
        .contains(raw)
}

/// Allowed edit distance for a Latin query word: 1 from 5 letters, 2 from 9.
pub(crate) fn fuzzy_distance(raw: &str) -> u8 {
    if !raw.bytes().all(|b| b.is_ascii_alphabetic()) {
        return 0;
    }
    match raw.len() {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Damerau–Levenshtein (optimal string alignment) distance, bounded: returns
/// `max + 1` as soon as the distance must exceed `max`. Used for highlighting
/// fuzzy matches, consistent with tantivy's transposition-aware automaton.
pub(crate) fn edit_distance_within(a: &str, b: &str, max: u8) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let max = max as usize;
    if a.len().abs_diff(b.len()) > max {
        return false;
    }
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        d[i * w] = i;
        let mut row_min = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return false;
        }
    }
    d[a.len() * w + b.len()] <= max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut a = word_analyzer(Segmenter::global());
        analyze(&mut a, text).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn mixed_text_is_segmented_lowercased_and_stemmed() {
        let w = words("护照在国外遗失怎么办？Lost PASSPORTS, **embassies** <b>!");
        assert!(w.contains(&"护照".to_string()), "{w:?}");
        assert!(w.contains(&"遗失".to_string()), "{w:?}");
        assert!(w.contains(&"passport".to_string()), "{w:?}");
        assert!(w.contains(&"embassi".to_string()), "{w:?}");
        assert!(w.contains(&"lost".to_string()), "{w:?}");
        assert!(
            w.iter().all(|t| t.chars().all(char::is_alphanumeric)),
            "{w:?}"
        );
    }

    #[test]
    fn grams_and_pinyin() {
        let mut g = GramTokenizer;
        let mut ts = g.token_stream("旅行证 ok");
        let mut v = Vec::new();
        while ts.advance() {
            v.push(ts.token().text.clone());
        }
        assert_eq!(v, ["旅", "旅行", "行", "行证", "证"]);
        let mut p = PinyinTokenizer::new();
        let mut ts = p.token_stream("护照");
        let mut v = Vec::new();
        while ts.advance() {
            v.push(ts.token().text.clone());
        }
        assert_eq!(v, ["huzhao", "hu", "zhao"]);
        assert!(is_pinyin_syllable("zhao"));
        assert!(is_pinyin_syllable("lv") && is_pinyin_syllable("nv"));
        let mut ts = p.token_stream("旅行");
        let mut v = Vec::new();
        while ts.advance() {
            v.push(ts.token().text.clone());
        }
        assert!(
            v.contains(&"lvxing".to_string()) && v.contains(&"luxing".to_string()),
            "{v:?}"
        );
        assert!(!is_pinyin_syllable("passport"));
        let r = pinyin_readings("亚的斯", 16);
        assert_eq!(r[0], "yadesi");
        assert!(r.contains(&"yadisi".to_string()), "{r:?}");
        assert!(pinyin_readings("长长长长长长", 16).len() <= 16);
        assert!(
            is_pinyin_word("huzhao")
                && is_pinyin_word("yanglaojin")
                && is_pinyin_word("lvxingzheng")
        );
        assert!(
            !is_pinyin_word("passport") && !is_pinyin_word("visa") && !is_pinyin_word("pension")
        );
    }

    #[test]
    fn traditional_is_folded_to_simplified_keeping_offsets() {
        assert_eq!(to_simplified("護照遺失"), "护照遗失");
        assert_eq!(to_simplified("在線諮詢"), "在线咨询");
        assert_eq!(to_simplified("护照 passport"), "护照 passport");
        let w = words("我的護照遺失了");
        assert!(w.contains(&"护照".to_string()), "{w:?}");
        let mut a = word_analyzer(Segmenter::global());
        let text = "在海外遺失護照";
        let t = analyze(&mut a, text);
        let hz = t.iter().find(|t| t.text == "护照").unwrap();
        assert_eq!(&text[hz.offset_from..hz.offset_to], "護照");
    }

    #[test]
    fn distances() {
        assert_eq!(fuzzy_distance("visa"), 0);
        assert_eq!(fuzzy_distance("embasy"), 1);
        assert_eq!(fuzzy_distance("certifcation"), 2);
        assert_eq!(fuzzy_distance("12308"), 0);
        assert!(edit_distance_within("pasport", "passport", 1));
        assert!(edit_distance_within("recieve", "receive", 1));
        assert!(!edit_distance_within("visa", "vista", 0));
    }
}
