//! Loads the starter knowledge base (`knowledge-base/<locale>/*.md`) into search
//! documents the way the server does: YAML front matter for the fields, Markdown
//! reduced to its text for the body.

use std::path::{Path, PathBuf};

use lingshi_search::Doc;
use serde::Deserialize;

/// The repository's `knowledge-base` folder.
pub fn starter_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../knowledge-base")
}

#[derive(Deserialize)]
struct FrontMatter {
    slug: String,
    locale: String,
    title: String,
    category: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    countries: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    status: Option<String>,
}

/// The words of a Markdown text (markup and link targets dropped), as the server
/// indexes article bodies.
pub fn markdown_text(md: &str) -> String {
    use pulldown_cmark::{Event, Parser, TagEnd};
    let mut out = String::with_capacity(md.len());
    for ev in Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES) {
        match ev {
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak | Event::HardBreak => out.push(' '),
            Event::End(
                TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::Item | TagEnd::TableCell,
            ) => out.push('\n'),
            _ => {}
        }
    }
    out
}

/// Parses one article file; the id is `<locale>/<slug>` so both language versions of
/// a slug are distinct documents.
pub fn parse_article(text: &str) -> Result<Doc, String> {
    let rest = text
        .strip_prefix("---\n")
        .ok_or("file does not start with front matter")?;
    let end = rest.find("\n---").ok_or("front matter is not closed")?;
    let fm: FrontMatter =
        serde_yaml::from_str(&rest[..end]).map_err(|e| format!("front matter: {e}"))?;
    let body = &rest[end + 4..];
    Ok(Doc {
        id: format!("{}/{}", fm.locale, fm.slug),
        slug: fm.slug,
        locale: fm.locale,
        title: fm.title,
        summary: fm.summary,
        body: markdown_text(body),
        category: fm.category,
        countries: fm.countries,
        tags: fm.tags,
        published: fm.status.as_deref().is_none_or(|s| s == "published"),
    })
}

/// Every article under `dir` (any depth), sorted by id.
pub fn load(dir: &Path) -> Vec<Doc> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md")
                && p.file_name().is_some_and(|n| n != "README.md")
            {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut docs: Vec<Doc> = files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("read article");
            parse_article(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect();
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    docs
}

/// The starter knowledge base.
pub fn starter() -> Vec<Doc> {
    load(&starter_dir())
}

/// The language ("zh" or "en") of a locale.
pub fn lang_of(locale: &str) -> &str {
    locale.split(['-', '_']).next().unwrap_or(locale)
}

/// The knowledge base with one language version of every slug removed: slugs in
/// sorted order alternate between keeping only English and keeping only Chinese,
/// starting with English when `parity` is 0. Running both parities puts every
/// question once in front of a knowledge base where its answer exists only in the
/// other language.
pub fn one_language_per_slug(docs: &[Doc], parity: usize) -> Vec<Doc> {
    let mut slugs: Vec<&str> = docs.iter().map(|d| d.slug.as_str()).collect();
    slugs.sort_unstable();
    slugs.dedup();
    docs.iter()
        .filter(|d| {
            let i = slugs.binary_search(&d.slug.as_str()).expect("known slug");
            let keep = if (i + parity).is_multiple_of(2) {
                "en"
            } else {
                "zh"
            };
            lang_of(&d.locale) == keep
        })
        .cloned()
        .collect()
}
