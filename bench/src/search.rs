//! `search`: a seeded synthetic zh-CN + en corpus of consular articles, imported with
//! `lingshi kb import` into a running server; latency over HTTP and, side by side, of the
//! same queries on an in-process `lingshi_search::TantivyEngine` built in RAM.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lingshi_search::{Doc, Query, SearchEngine, Synonyms, TantivyEngine};
use serde_json::{json, Value};

use crate::target::Target;
use crate::util::{self, Rng, Summary};

const ZH_TOPICS: &[&str] = &[
    "护照",
    "签证",
    "旅行证",
    "领事保护",
    "养老金",
    "资格认证",
    "公证",
    "认证",
    "紧急",
    "报警",
    "遗失",
    "被盗",
    "补办",
    "换发",
    "居留",
    "出生登记",
    "婚姻",
    "海关",
    "健康证明",
    "驾照",
    "领事",
    "使馆",
    "预约",
    "材料",
    "照片",
    "指纹",
    "费用",
    "办理时间",
    "邮寄",
    "翻译",
];
const ZH_FILLER: &[&str] = &[
    "请",
    "携带",
    "本人",
    "有效",
    "申请",
    "需要",
    "提前",
    "在线",
    "填写",
    "表格",
    "并",
    "提交",
    "到",
    "当地",
    "警方",
    "报案",
    "证明",
    "原件",
    "复印件",
    "工作日",
    "如果",
    "您",
    "可以",
    "联系",
    "我们",
    "的",
    "时候",
    "注意",
    "安全",
    "保管",
    "好",
    "个人",
    "信息",
    "中国",
    "公民",
    "在国外",
    "期间",
    "遇到",
    "问题",
    "及时",
    "电话",
    "咨询",
    "办理",
    "手续",
    "相关",
    "规定",
];
const EN_TOPICS: &[&str] = &[
    "passport",
    "visa",
    "travel",
    "document",
    "consular",
    "protection",
    "pension",
    "legalisation",
    "notarisation",
    "emergency",
    "police",
    "stolen",
    "lost",
    "renewal",
    "residence",
    "birth",
    "registration",
    "marriage",
    "customs",
    "certificate",
    "licence",
    "embassy",
    "appointment",
    "photograph",
    "fingerprints",
    "fees",
    "processing",
    "translation",
    "authentication",
    "insurance",
];
const EN_FILLER: &[&str] = &[
    "please",
    "bring",
    "your",
    "valid",
    "application",
    "form",
    "in",
    "person",
    "the",
    "to",
    "of",
    "and",
    "with",
    "for",
    "at",
    "a",
    "local",
    "office",
    "report",
    "original",
    "copy",
    "working",
    "days",
    "if",
    "you",
    "can",
    "contact",
    "us",
    "when",
    "keep",
    "safe",
    "personal",
    "information",
    "citizens",
    "abroad",
    "during",
    "problems",
    "promptly",
    "phone",
    "enquiries",
    "procedures",
    "rules",
    "apply",
    "submit",
    "online",
    "before",
    "after",
    "must",
    "should",
    "may",
];
const CATEGORIES: &[&str] = &[
    "guide",
    "faq",
    "announcement",
    "visa_policy",
    "document_policy",
    "emergency_contacts",
];
const COUNTRIES: &[&str] = &["BE", "ET", "US", "LU", "FR", "DE"];

/// One generated article: its file text and the same content as a search `Doc`.
pub struct Article {
    pub slug: String,
    pub markdown: String,
    pub doc: Doc,
}

fn reference(i: usize) -> String {
    format!("kbref{i:07}")
}

pub fn generate(i: usize, seed: u64) -> Article {
    let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let zh = i.is_multiple_of(2);
    let (topics, filler) = if zh {
        (ZH_TOPICS, ZH_FILLER)
    } else {
        (EN_TOPICS, EN_FILLER)
    };
    let t1 = rng.pick(topics).to_string();
    let t2 = rng.pick(topics).to_string();
    let title = if zh {
        format!("{t1}{t2}办理指南（{}）", i)
    } else {
        format!("{} and {t2}: what to do ({i})", capitalise(&t1))
    };
    let target_len = rng.range(200, 801);
    let mut body = String::new();
    let mut units = 0;
    let mut sentence = 0;
    while units < target_len {
        let w = if rng.chance(0.3) {
            rng.pick(topics)
        } else {
            rng.pick(filler)
        };
        if zh {
            body.push_str(w);
            units += w.chars().count();
        } else {
            if !body.is_empty() && !body.ends_with('\n') {
                body.push(' ');
            }
            body.push_str(w);
            units += 1;
        }
        sentence += 1;
        if sentence > 12 && rng.chance(0.2) {
            body.push_str(if zh { "。" } else { "." });
            sentence = 0;
            if rng.chance(0.15) {
                body.push_str("\n\n");
            }
        }
    }
    body.push_str(if zh { "。\n" } else { ".\n" });
    let summary = if zh {
        format!("关于{t1}和{t2}的说明")
    } else {
        format!("About {t1} and {t2}")
    };
    let category = rng.pick(CATEGORIES).to_string();
    let countries: Vec<String> = if rng.chance(0.5) {
        vec![]
    } else {
        vec![rng.pick(COUNTRIES).to_string()]
    };
    let tags = vec![rng.pick(EN_TOPICS).to_string(), reference(i)];
    let slug = format!("bench-{i:07}");
    let locale = if zh { "zh-CN" } else { "en" };
    let markdown = format!(
        "---\nslug: {slug}\nlocale: {locale}\ntitle: \"{title}\"\ncategory: {category}\ncountries: [{}]\ntags: [{}]\nsummary: \"{summary}\"\nstatus: published\n---\n## {title}\n\n{body}",
        countries.join(", "),
        tags.join(", "),
    );
    let doc = Doc {
        id: format!("00000000-0000-7000-8000-{i:012}"),
        slug: slug.clone(),
        locale: locale.into(),
        title,
        summary,
        body,
        category,
        countries,
        tags,
        published: true,
    };
    Article {
        slug,
        markdown,
        doc,
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Write `n` articles under `dir` (1,000 per folder).
pub fn write_corpus(dir: &Path, n: usize, seed: u64) -> anyhow::Result<()> {
    for i in 0..n {
        let a = generate(i, seed);
        let sub = dir.join(format!("{:04}", i / 1000));
        if i.is_multiple_of(1000) {
            std::fs::create_dir_all(&sub)?;
        }
        std::fs::write(sub.join(format!("{}.md", a.slug)), a.markdown)?;
    }
    Ok(())
}

/// One English topic word with one edit (deletion, transposition or substitution).
fn typo(word: &str, rng: &mut Rng) -> String {
    let mut c: Vec<char> = word.chars().collect();
    if c.len() < 5 {
        return word.to_string();
    }
    let p = rng.range(1, c.len() - 1);
    match rng.range(0, 3) {
        0 => {
            c.remove(p);
        }
        1 => c.swap(p, p + 1),
        _ => c[p] = if c[p] == 'e' { 'a' } else { 'e' },
    }
    c.into_iter().collect()
}

const PINYIN: &[&str] = &[
    "huzhao",
    "qianzheng",
    "lvxingzheng",
    "lingshibaohu",
    "yanglaojin",
    "gongzheng",
    "renzheng",
    "baojing",
    "yishi",
    "buban",
    "shiguan",
    "yuyue",
];

/// The query mix: (class, text), a third each.
pub fn queries(q: usize, seed: u64) -> Vec<(&'static str, String)> {
    let mut rng = Rng::new(seed.wrapping_add(17));
    let long_en: Vec<&str> = EN_TOPICS.iter().copied().filter(|w| w.len() >= 5).collect();
    (0..q)
        .map(|i| match i % 3 {
            0 => {
                let a = rng.pick(ZH_TOPICS);
                if rng.chance(0.5) {
                    ("zh", a.to_string())
                } else {
                    ("zh", format!("{a}{}怎么办", rng.pick(ZH_TOPICS)))
                }
            }
            1 => {
                let w = rng.pick(&long_en);
                ("en-typo", typo(w, &mut rng))
            }
            _ => ("pinyin", rng.pick(PINYIN).to_string()),
        })
        .collect()
}

#[derive(Debug, Default)]
pub struct SearchFigures {
    pub articles: usize,
    pub import_secs: f64,
    pub index_bytes: u64,
    pub http: Vec<(String, Summary)>,
    pub inproc: Vec<(String, Summary)>,
    pub inproc_build_secs: f64,
    pub zero_hit_queries: usize,
}

impl SearchFigures {
    pub fn json(&self) -> Value {
        let m = |v: &Vec<(String, Summary)>| {
            v.iter()
                .map(|(k, s)| (k.clone(), s.json()))
                .collect::<serde_json::Map<_, _>>()
        };
        json!({"articles": self.articles, "import_and_index_secs": self.import_secs,
               "index_bytes": self.index_bytes, "http": m(&self.http), "in_process": m(&self.inproc),
               "in_process_build_secs": self.inproc_build_secs, "zero_hit_queries": self.zero_hit_queries})
    }
}

fn by_class(samples: &[(&'static str, f64)]) -> Vec<(String, Summary)> {
    let mut out = vec![];
    for class in ["zh", "en-typo", "pinyin", "all"] {
        let v: Vec<f64> = samples
            .iter()
            .filter(|(c, _)| class == "all" || *c == class)
            .map(|(_, ms)| *ms)
            .collect();
        out.push((class.to_string(), Summary::of(v)));
    }
    out
}

/// The queries against an index of the same articles built in this process: in RAM,
/// or on disk in `index` (kept, and reused when it already holds `articles`
/// documents, so that query changes can be measured without indexing again).
/// `rounds` repeats the query set (the figures cover every round); the
/// `show_slowest` slowest queries are printed. Returns the
/// latencies and the seconds spent building (0 when reused).
pub async fn in_process(
    articles: usize,
    qs: Vec<(&'static str, String)>,
    seed: u64,
    repo: &Path,
    index: Option<std::path::PathBuf>,
    rounds: usize,
    show_slowest: usize,
) -> anyhow::Result<(Vec<(String, Summary)>, f64)> {
    let synonyms = match std::fs::read_to_string(repo.join("knowledge-base/synonyms.toml")) {
        Ok(s) => Synonyms::from_toml(&s)?,
        Err(_) => Synonyms::empty(),
    };
    let build = Instant::now();
    let (samples, build_secs) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let engine = match &index {
            Some(dir) => TantivyEngine::open(dir, synonyms)?,
            None => TantivyEngine::open_in_ram(synonyms)?,
        };
        let mut build_secs = 0.0;
        if engine.doc_count()? != articles as u64 {
            engine.clear()?;
            let mut batch = vec![];
            for i in 0..articles {
                batch.push(generate(i, seed).doc);
                if batch.len() == 5000 {
                    engine.upsert(std::mem::take(&mut batch))?;
                }
            }
            engine.upsert(batch)?;
            engine.commit()?;
            build_secs = build.elapsed().as_secs_f64();
        }
        for (_, q) in qs.iter().take(10) {
            engine.search(&Query::new(q.as_str()))?;
        }
        let mut samples = vec![];
        let mut slowest: Vec<(f64, &str)> = vec![];
        for _ in 0..rounds.max(1) {
            for (class, q) in &qs {
                let s = Instant::now();
                engine.search(&Query::new(q.as_str()))?;
                let ms = s.elapsed().as_secs_f64() * 1000.0;
                samples.push((*class, ms));
                slowest.push((ms, q.as_str()));
            }
        }
        if show_slowest > 0 {
            slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (ms, q) in slowest.iter().take(show_slowest) {
                println!("{ms:8.2} ms  {q}");
            }
        }
        Ok((samples, build_secs))
    })
    .await??;
    Ok((by_class(&samples), build_secs))
}

pub async fn run(
    t: &Target,
    articles: usize,
    nq: usize,
    seed: u64,
    repo: &Path,
) -> anyhow::Result<SearchFigures> {
    let data = t
        .data_dir
        .clone()
        .context("search needs the server's data dir (--data-dir with --url)")?;
    let dir = tempfile::Builder::new()
        .prefix("lingshi-bench-kb-")
        .tempdir()?;
    let gen = Instant::now();
    write_corpus(dir.path(), articles, seed)?;
    eprintln!(
        "search: generated {articles} articles in {:.1} s",
        gen.elapsed().as_secs_f64()
    );
    let api = t.api();
    let last = articles - 1;
    let last_slug = format!("bench-{last:07}");
    let started = Instant::now();
    let out = t
        .cli(&["kb", "import", &dir.path().display().to_string()], None)
        .await?;
    let summary_line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("imported"))
        .unwrap_or("");
    eprintln!(
        "search: `kb import` finished in {:.1} s: {summary_line}",
        started.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let v = api.kb_search(&reference(last)).await?;
        let found = v["hits"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["slug"] == last_slug.as_str()));
        if found {
            break;
        }
        if Instant::now() > deadline {
            bail!("last imported article not searchable within an hour");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let import_secs = started.elapsed().as_secs_f64();
    // let the indexer finish merging before sizing the index
    tokio::time::sleep(Duration::from_secs(2)).await;
    let index_bytes = util::dir_size(&data.join("index"));
    eprintln!("search: searchable after {import_secs:.1} s; index {index_bytes} bytes");

    let qs = queries(nq, seed);
    // warm-up: a few queries so the first ones do not pay for page faults alone
    for (_, q) in qs.iter().take(10) {
        api.kb_search(q).await?;
    }
    let mut http = vec![];
    let mut zero = 0;
    for (class, q) in &qs {
        let s = Instant::now();
        let v = api.kb_search(q).await?;
        http.push((*class, s.elapsed().as_secs_f64() * 1000.0));
        if v["total"].as_u64() == Some(0) {
            zero += 1;
        }
    }

    // In-process: the same documents in a RAM index, the same queries.
    let (inproc, build_secs) = in_process(articles, qs, seed, repo, None, 1, 0).await?;
    Ok(SearchFigures {
        articles,
        import_secs,
        index_bytes,
        http: by_class(&http),
        inproc,
        inproc_build_secs: build_secs,
        zero_hit_queries: zero,
    })
}
