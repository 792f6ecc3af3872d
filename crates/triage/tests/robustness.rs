//! `classify` must answer for any string a client can send: empty, huge, control
//! characters, broken encodings decoded lossily, mixed scripts, emoji.

use lingshi_triage::{Assessment, Triage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn check(t: &Triage, text: &str) -> Assessment {
    let a = t.classify(text, None);
    assert!(
        a.score.is_finite() && (0.0..=1.0).contains(&a.score),
        "score {} for {text:?}",
        a.score
    );
    assert!(a.reasons.len() <= 64);
    for r in &a.reasons {
        assert!(!r.kind.is_empty());
        assert!(r.matched.len() <= 60, "quote too long: {:?}", r.matched);
        // Quotes come from the citizen's text (a pattern joins several with " … ").
        for part in r.matched.split(" … ") {
            assert!(text.contains(part), "{part:?} is not part of {text:?}");
        }
    }
    a
}

const PALETTE: &[&str] = &[
    "救",
    "命",
    "被",
    "抢",
    "劫",
    "绑",
    "架",
    "没",
    "有",
    "如果",
    "电影",
    "三年前",
    "热死了",
    "护照",
    "丢",
    "了",
    "，",
    "。",
    "！",
    "？",
    "　",
    "ｈｅｌｐ",
    "Ｓ",
    "help",
    "me",
    "not",
    "if",
    "robbed",
    "kill",
    "killing",
    "news",
    "embassy",
    "transfer",
    "safe account",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\t",
    "\0",
    "\u{7}",
    "\u{1b}[31m",
    "\u{200b}",
    "\u{202e}",
    "\u{feff}",
    "\u{fe0f}",
    "\u{301}",
    "e\u{301}",
    "🆘",
    "😂",
    "👨‍👩‍👧",
    "🇨🇳",
    "İ",
    "ß",
    "ﬁ",
    "Ω",
    "ΣΑΣ",
    "ا",
    "ש",
    "한",
    "の",
    "𠀀",
    "𪚥",
    "\u{10ffff}",
    "\u{fffd}",
    "'",
    "’",
    "\"",
    "\\",
    "<script>",
    "%s",
    "{}",
    "{signal}",
    "@family",
    ".",
    ". ",
    "...",
    "aaaaaaaa",
    "jiuming",
    "bei qiang",
    "folowing",
    "過",
    "綁架",
    "搶劫",
    "護照",
    "—",
    "…",
    "~",
];

#[test]
fn never_panics_on_hostile_or_random_input() {
    let t = Triage::builtin();
    let mut fixed: Vec<String> = vec![
        String::new(),
        " ".into(),
        "\n\n\n".into(),
        "\0".repeat(100),
        "救".repeat(4000),
        "a".repeat(4000),
        "help ".repeat(800),
        "救命".repeat(3000),
        "没有".repeat(2000),
        "如果被抢了".repeat(800),
        "🆘".repeat(2000),
        "e\u{301}".repeat(2000),
        "İ".repeat(5000),
        "'".repeat(1000),
        "x".repeat(100_000),
        "被".repeat(20_000),
    ];
    let mut rng = StdRng::seed_from_u64(0x1_2308);
    for _ in 0..200 {
        let len = rng.gen_range(0..4000usize);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        fixed.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    for _ in 0..200 {
        let len = rng.gen_range(0..300usize);
        let s: String = (0..len).map(|_| rng.gen::<char>()).collect();
        fixed.push(s);
    }
    for _ in 0..2000 {
        let n = if rng.gen_bool(0.05) {
            rng.gen_range(500..2000)
        } else {
            rng.gen_range(0..40)
        };
        let s: String = (0..n)
            .map(|_| PALETTE[rng.gen_range(0..PALETTE.len())])
            .collect();
        fixed.push(s);
    }
    for s in &fixed {
        check(&t, s);
    }
}

#[test]
fn long_messages_are_classified_by_their_content() {
    let t = Triage::builtin();
    let filler = "我想咨询一下签证和护照的事情，".repeat(120);
    let a = check(&t, &format!("{filler}救命！有人拿刀在追我，他还在门外"));
    assert_eq!(a.category, lingshi_triage::Category::Emergency, "{a:?}");
    let a = check(&t, &filler);
    assert_eq!(a.category, lingshi_triage::Category::Routine, "{a:?}");
}
