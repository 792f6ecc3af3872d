//! Indexing and search benchmark on N deterministic synthetic articles (default
//! 100 000, half zh-CN, half en) in a temporary on-disk index: prints the time to
//! upsert and commit them (documents per second) and p50/p99 search latency for
//! Chinese and English questions, typo'd English, pinyin and mixed queries, every other
//! query with a country filter, all through the built-in dictionary.
//!
//! `cargo run --release -p lingshi-search --example search_bench -- [N] [--threads T]
//! [--heap-mib M] [--batch B] [--rounds R] [--index DIR]`
//!
//! With `--index DIR` the index is kept in DIR and reused when it already holds N
//! documents (to measure search changes without indexing again).
//!
//! The vocabulary is small (about 80 words per language), so every query word occurs
//! in most documents of its language: a worst case for posting-list lengths.
//!
//! Besides wall-clock latency it prints the CPU time of the searching thread, which
//! stays meaningful when other processes compete for the cores.

use std::time::{Duration, Instant};

use lingshi_search::{Doc, Query, SearchEngine, Synonyms, TantivyEngine, WriterOptions};

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

/// CPU time consumed by the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time consumed by the whole process (all indexing threads).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, times: &mut [Duration], cpus: &mut [Duration], totals: usize) {
    times.sort();
    cpus.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:12} queries={:4} wall p50={:6.2}ms p99={:6.2}ms max={:6.2}ms | cpu p50={:6.2}ms p99={:6.2}ms | avg_total_hits={}",
        times.len(),
        ms(percentile(times, 0.5)),
        ms(percentile(times, 0.99)),
        times.last().map_or(0.0, |d| ms(*d)),
        ms(percentile(cpus, 0.5)),
        ms(percentile(cpus, 0.99)),
        totals / times.len().max(1)
    );
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let defaults = WriterOptions::default();
    let options = WriterOptions {
        threads: arg(&args, "--threads").unwrap_or(defaults.threads),
        heap_bytes: arg::<usize>(&args, "--heap-mib")
            .map(|m| m << 20)
            .unwrap_or(defaults.heap_bytes),
    };
    let batch: usize = arg(&args, "--batch").unwrap_or(1000);
    let rounds: usize = arg(&args, "--rounds").unwrap_or(40);
    let keep: Option<std::path::PathBuf> = arg(&args, "--index");
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("lingshi-search-bench-{}", std::process::id()))
    });
    let engine = TantivyEngine::open_with(&dir, Synonyms::builtin(), options)?;
    if keep.is_some() && engine.doc_count()? == n as u64 {
        println!("reusing the index in {} ({n} docs)", dir.display());
    } else {
        engine.clear()?;
        index(&engine, n, batch, options)?;
    }
    search(&engine, rounds)?;
    drop(engine);
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn index(
    engine: &TantivyEngine,
    n: usize,
    batch: usize,
    options: WriterOptions,
) -> Result<(), Box<dyn std::error::Error>> {
    let docs = synthetic(n);
    let cpu0 = process_cpu();
    let t = Instant::now();
    for chunk in docs.chunks(batch) {
        engine.upsert(chunk.to_vec())?;
    }
    let upserted = t.elapsed();
    engine.commit()?;
    let total = t.elapsed();
    let cpu = process_cpu() - cpu0;
    println!(
        "indexed {n} docs (writer: {} thread(s), {} MiB, batches of {batch}): upsert {:.1}s + commit {:.1}s = {:.1}s wall, {:.1}s CPU, {:.0} docs/s, index size {:.1} MiB",
        options.threads,
        options.heap_bytes >> 20,
        upserted.as_secs_f64(),
        (total - upserted).as_secs_f64(),
        total.as_secs_f64(),
        cpu.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        engine.index_size_bytes() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

fn search(engine: &TantivyEngine, rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
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
            "zh-question",
            &[
                "有人打电话让我转账",
                "护照丢了咋整",
                "我在国外被警察拘留了家属应该怎么联系律师",
                "请问一下在国外养老金资格认证需要准备什么材料",
                "航班取消了滞留机场怎么办",
                "護照在國外遺失怎麼辦",
            ],
        ),
        (
            "en-question",
            &[
                "someone called me asking to transfer money",
                "my pasport got stolen what now",
                "is it safe to travel at night",
                "embassy phone number",
                "can you tell me how to renew my passport online",
                "my father was detained abroad, can the embassy find a lawyer",
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
    let (mut all_wall, mut all_cpu) = (Vec::new(), Vec::new());
    for (name, queries) in classes {
        let (mut times, mut cpus) = (Vec::new(), Vec::new());
        let mut totals = 0usize;
        for round in 0..rounds + 2 {
            for (qi, text) in queries.iter().enumerate() {
                let q = Query {
                    country: (qi % 2 == 0).then(|| "JP".to_string()),
                    ..Query::new(*text)
                };
                let c = thread_cpu();
                let t = Instant::now();
                let r = engine.search(&q)?;
                let el = t.elapsed();
                let cpu = thread_cpu() - c;
                if round >= 2 {
                    times.push(el);
                    cpus.push(cpu);
                    totals += r.total;
                }
            }
        }
        all_wall.extend(&times);
        all_cpu.extend(&cpus);
        report(name, &mut times, &mut cpus, totals);
    }
    report("all", &mut all_wall, &mut all_cpu, 0);
    Ok(())
}
