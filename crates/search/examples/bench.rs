//! Latency benchmark: indexes N deterministic synthetic articles (default 20 000, half
//! zh-CN, half en) into a temporary on-disk index and prints p50/p99 query latency for
//! Chinese, typo'd English and pinyin queries.
//!
//! `cargo run --release --example bench -- [N]`

use std::time::{Duration, Instant};

use lingshi_search::{Doc, Query, SearchEngine, Synonyms, TantivyEngine};

const ZH_WORDS: &[&str] = &[
    "护照",
    "遗失",
    "补发",
    "旅行证",
    "使馆",
    "领事",
    "保护",
    "热线",
    "养老金",
    "资格",
    "认证",
    "签证",
    "政策",
    "诈骗",
    "电话",
    "抢劫",
    "报警",
    "地震",
    "安全",
    "提醒",
    "公民",
    "国外",
    "申请",
    "材料",
    "照片",
    "办理",
    "时间",
    "工作日",
    "紧急",
    "情况",
    "协助",
    "家属",
    "联系",
    "医疗",
    "保险",
    "留学生",
    "证件",
    "身份证",
    "驾驶证",
    "公证",
    "婚姻",
    "登记",
    "出生",
    "子女",
    "拘留",
    "律师",
    "洪水",
    "台风",
    "航班",
    "机场",
    "酒店",
    "预订",
    "免签",
    "入境",
    "出境",
    "海关",
    "行李",
    "现金",
    "银行卡",
    "转账",
    "冒充",
    "警方",
    "报案",
    "证明",
    "有效期",
    "换发",
    "预约",
    "在线",
    "填写",
    "提交",
    "审核",
    "领取",
    "费用",
    "标准",
    "通知",
    "公告",
    "春节",
    "办公",
    "暂停",
    "恢复",
    "撤离",
    "避难",
];

const EN_WORDS: &[&str] = &[
    "passport",
    "lost",
    "stolen",
    "replacement",
    "embassy",
    "consulate",
    "protection",
    "hotline",
    "pension",
    "eligibility",
    "certification",
    "visa",
    "policy",
    "scam",
    "phone",
    "robbery",
    "police",
    "earthquake",
    "safety",
    "alert",
    "citizens",
    "abroad",
    "apply",
    "documents",
    "photos",
    "processing",
    "time",
    "working",
    "days",
    "emergency",
    "assistance",
    "family",
    "contact",
    "medical",
    "insurance",
    "students",
    "identity",
    "card",
    "driving",
    "licence",
    "notarization",
    "marriage",
    "registration",
    "birth",
    "children",
    "detained",
    "lawyer",
    "flood",
    "typhoon",
    "flight",
    "airport",
    "hotel",
    "booking",
    "entry",
    "exit",
    "customs",
    "luggage",
    "cash",
    "bank",
    "transfer",
    "impersonating",
    "report",
    "certificate",
    "validity",
    "renewal",
    "appointment",
    "online",
    "form",
    "submit",
    "review",
    "collect",
    "fees",
    "notice",
    "announcement",
    "holiday",
    "office",
    "hours",
    "suspended",
    "evacuation",
];

const CATEGORIES: &[&str] = &[
    "guide",
    "faq",
    "safety_alert",
    "announcement",
    "visa_policy",
    "document_policy",
    "emergency_contacts",
];
const COUNTRIES: &[&str] = &["JP", "TH", "FR", "DE", "US", "GB", "TR", "PH", "AU", "CA"];

const SYNONYMS: &str = r#"
[[group]]
words = ["passport", "护照", "huzhao"]
[[group]]
words = ["lost", "丢失", "遗失", "丢了", "missing"]
[[group]]
words = ["scam", "fraud", "诈骗"]
[[group]]
words = ["embassy", "consulate", "使馆", "领馆"]
[[group]]
words = ["earthquake", "地震", "dizhen"]
[[group]]
words = ["pension", "养老金"]
"#;

/// Small deterministic PRNG (xorshift64*), so every run indexes the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

fn text(rng: &mut Rng, zh: bool, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        if zh {
            s.push_str(rng.pick(ZH_WORDS));
            if i % 9 == 8 {
                s.push('，');
            }
        } else {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(rng.pick(EN_WORDS));
            if i % 11 == 10 {
                s.push('.');
            }
        }
    }
    s.push(if zh { '。' } else { '.' });
    s
}

fn synthetic(n: usize) -> Vec<Doc> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let zh = i % 2 == 0;
            let countries = if rng.below(3) == 0 {
                vec![rng.pick(COUNTRIES).to_string()]
            } else {
                Vec::new()
            };
            Doc {
                id: format!("00000000-0000-4000-8000-{i:012}"),
                slug: format!("article-{i}"),
                locale: if zh { "zh-CN" } else { "en" }.to_string(),
                title: {
                    let w = 3 + rng.below(4);
                    text(&mut rng, zh, w)
                },
                summary: {
                    let w = 12 + rng.below(8);
                    text(&mut rng, zh, w)
                },
                body: {
                    let w = 120 + rng.below(200);
                    text(&mut rng, zh, w)
                },
                category: rng.pick(CATEGORIES).to_string(),
                countries,
                tags: vec![rng.pick(if zh { ZH_WORDS } else { EN_WORDS }).to_string()],
                published: rng.below(20) != 0,
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("lingshi-search-bench-{}", std::process::id()));
    let engine = TantivyEngine::open(&dir, Synonyms::from_toml(SYNONYMS)?)?;

    let t = Instant::now();
    let docs = synthetic(n);
    for chunk in docs.chunks(1000) {
        engine.upsert(chunk.to_vec())?;
    }
    engine.commit()?;
    println!(
        "indexed {n} docs in {:.1}s, index size {:.1} MiB",
        t.elapsed().as_secs_f64(),
        engine.index_size_bytes() as f64 / (1024.0 * 1024.0)
    );

    let classes: &[(&str, &[&str])] = &[
        (
            "chinese",
            &[
                "护照丢了怎么办",
                "养老金资格认证",
                "旅行证",
                "地震安全提醒",
                "电话诈骗怎么办",
                "被抢了怎么报警",
            ],
        ),
        (
            "typo-en",
            &[
                "pasport lost",
                "embasy contact",
                "pension certifcation",
                "emergancy assistance",
                "earthquak",
            ],
        ),
        (
            "pinyin",
            &["huzhao", "hu zhao", "yanglaojin", "dizhen", "huzhao diule"],
        ),
    ];
    const ROUNDS: usize = 40;
    for (name, queries) in classes {
        let mut times = Vec::new();
        let mut totals = 0usize;
        for round in 0..ROUNDS + 2 {
            for (qi, text) in queries.iter().enumerate() {
                let q = Query {
                    country: (qi % 2 == 0).then(|| "JP".to_string()),
                    ..Query::new(*text)
                };
                let t = Instant::now();
                let r = engine.search(&q)?;
                let el = t.elapsed();
                if round >= 2 {
                    times.push(el);
                    totals += r.total;
                }
            }
        }
        times.sort();
        println!(
            "{name:8} queries={:4} p50={:6.2}ms p99={:6.2}ms max={:6.2}ms avg_total_hits={}",
            times.len(),
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            totals / times.len().max(1)
        );
    }
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
