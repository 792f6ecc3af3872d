//! `lingshi kb import DIR`: Markdown files with YAML front matter, upserted by slug +
//! locale, unchanged files skipped by content hash. Every problem names the file and the
//! line; valid files are imported even when others fail.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{render_markdown, validate, ArticleInput};
use crate::domain::model::{Area, ArticleFields, ArticleImport, SaveMode, SaveOutcome};
use crate::domain::ports::Store;

/// The front matter keys of the import format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    slug: String,
    locale: String,
    title: String,
    category: String,
    #[serde(default)]
    countries: Option<Vec<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    area: Option<Area>,
}

/// A problem with one file, at a 1-based line.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Split front matter from body and parse it. Errors carry the line in the file.
pub fn parse(text: &str) -> Result<ArticleFields, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    match lines.next() {
        Some(first) if first.trim_end() == "---" => {}
        _ => {
            return Err((
                1,
                "the file must start with a `---` line opening the front matter".into(),
            ))
        }
    }
    let mut yaml = String::new();
    let mut closed_at = None;
    let mut consumed = 0;
    for (i, line) in lines.by_ref().enumerate() {
        consumed += line.len();
        if line.trim_end() == "---" {
            closed_at = Some(i + 2);
            break;
        }
        yaml.push_str(line);
    }
    let Some(close_line) = closed_at else {
        return Err((
            1,
            "the front matter opened on line 1 is never closed with `---`".into(),
        ));
    };
    let first_len = text.split_inclusive('\n').next().map_or(0, str::len);
    let body = &text[first_len + consumed..];
    let fm: FrontMatter = serde_yaml::from_str(&yaml).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line() + 1);
        let msg = e.to_string();
        // serde_yaml appends "at line N column M" relative to the front matter.
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        (line, format!("front matter: {msg}"))
    })?;
    let fields = ArticleInput {
        slug: fm.slug,
        locale: fm.locale,
        title: fm.title,
        summary: fm.summary.unwrap_or_default(),
        body_markdown: body.trim_start_matches(['\n', '\r']).to_string(),
        category: fm.category,
        countries: fm.countries.unwrap_or_default(),
        tags: fm.tags.unwrap_or_default(),
        status: fm.status.unwrap_or_else(|| "published".into()),
        severity: fm.severity,
        area: fm.area,
        expires_at: fm.expires_at,
    };
    validate(fields).map_err(|e| {
        let line = yaml
            .lines()
            .position(|l| {
                l.trim_start()
                    .strip_prefix(e.field)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map_or(close_line, |i| i + 2);
        (line, e.message)
    })
}

/// Markdown files under `dir` at any depth, in a stable order. README files document
/// the folder and are not articles.
pub fn find_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                if !entry.file_name().to_string_lossy().starts_with('.') {
                    stack.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("md"))
                && !entry
                    .file_name()
                    .to_string_lossy()
                    .eq_ignore_ascii_case("readme.md")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub errors: Vec<ImportError>,
}

/// Files parsed and rendered ahead of the database, and written per transaction.
const BATCH: usize = 256;

/// Read, parse, hash and render one file (no database).
pub fn prepare_file(path: &Path) -> Result<ArticleImport, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError {
        path: path.to_path_buf(),
        line: 1,
        message: format!("cannot read: {e}"),
    })?;
    prepare_bytes(path, bytes)
}

/// Parse, hash and render one file's content (`path` names it in errors).
pub fn prepare_bytes(path: &Path, bytes: Vec<u8>) -> Result<ArticleImport, ImportError> {
    let err = |line: usize, message: String| ImportError {
        path: path.to_path_buf(),
        line,
        message,
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
        err(line, "the file is not valid UTF-8".into())
    })?;
    let fields = parse(&text).map_err(|(line, msg)| err(line, msg))?;
    let source_hash: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body_html = render_markdown(&fields.body_markdown);
    Ok(ArticleImport {
        fields,
        body_html,
        source_hash,
    })
}

/// [`prepare_file`] for many files, spread over the machine's cores; results in order.
fn prepare_files(paths: &[PathBuf]) -> Vec<Result<ArticleImport, ImportError>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let per = paths.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = paths
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(|p| prepare_file(p)).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Import one file.
pub async fn import_file(store: &dyn Store, path: &Path) -> Result<SaveOutcome, ImportError> {
    let article = prepare_file(path)?;
    save_one(store, path, article).await
}

/// Import one file's content (`path` names it in errors).
pub async fn import_bytes(
    store: &dyn Store,
    path: &Path,
    bytes: Vec<u8>,
) -> Result<SaveOutcome, ImportError> {
    let article = prepare_bytes(path, bytes)?;
    save_one(store, path, article).await
}

async fn save_one(
    store: &dyn Store,
    path: &Path,
    a: ArticleImport,
) -> Result<SaveOutcome, ImportError> {
    store
        .save_article(
            SaveMode::Upsert,
            &a.fields,
            &a.body_html,
            None,
            Some(&a.source_hash),
        )
        .await
        .map(|(_, outcome)| outcome)
        .map_err(|e| store_error(path, &e))
}

/// A file the store refused (or a batch that could not be written).
fn store_error(path: &Path, e: &crate::error::AppError) -> ImportError {
    ImportError {
        path: path.to_path_buf(),
        line: 1,
        message: e.detail(),
    }
}

/// Import every file under `dir`, reporting progress through `on_file` (in file
/// order). Files are read and rendered on every core while the previous batch is
/// written, and each batch is one transaction: a file that fails is reported and
/// rolled back alone.
pub async fn import_dir(
    store: &dyn Store,
    dir: &Path,
    mut on_file: impl FnMut(&Path, &Result<SaveOutcome, ImportError>),
) -> std::io::Result<ImportReport> {
    let files = find_files(dir)?;
    let mut report = ImportReport::default();
    let mut batches = files.chunks(BATCH).map(<[PathBuf]>::to_vec);
    let prepare = |paths: Vec<PathBuf>| {
        tokio::task::spawn_blocking(move || {
            let prepared = prepare_files(&paths);
            (paths, prepared)
        })
    };
    let mut next = batches.next().map(prepare);
    while let Some(job) = next.take() {
        let (paths, prepared) = job
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        next = batches.next().map(prepare);
        let mut results: Vec<Result<SaveOutcome, ImportError>> = Vec::with_capacity(paths.len());
        let mut items = Vec::new();
        let mut slots = Vec::new();
        for (i, p) in prepared.into_iter().enumerate() {
            match p {
                Ok(a) => {
                    slots.push(i);
                    items.push(a);
                    results.push(Ok(SaveOutcome::Unchanged));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !items.is_empty() {
            match store.import_articles(&items).await {
                Ok(saved) => {
                    for (slot, r) in slots.iter().zip(saved) {
                        results[*slot] = r.map_err(|e| store_error(&paths[*slot], &e));
                    }
                }
                Err(e) => {
                    for slot in &slots {
                        results[*slot] = Err(store_error(&paths[*slot], &e));
                    }
                }
            }
        }
        for (path, r) in paths.iter().zip(results) {
            on_file(path, &r);
            match r {
                Ok(SaveOutcome::Created) => report.created += 1,
                Ok(SaveOutcome::Updated) => report.updated += 1,
                Ok(SaveOutcome::Unchanged) => report.unchanged += 1,
                Err(e) => report.errors.push(e),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_example() {
        let f = parse(
            "---\nslug: lost-passport\nlocale: zh-CN\ntitle: 护照在国外遗失怎么办\ncategory: faq\ncountries: [BE, LU]\ntags: [passport, travel-document]\nsummary: 一句话摘要\nstatus: published\nexpires_at: 2027-01-31T00:00:00Z\nseverity: high\narea: {lat: 50.85, lon: 4.35, radius_km: 30}\n---\nBody in Markdown.\n",
        )
        .unwrap();
        assert_eq!(f.slug, "lost-passport");
        let countries: Vec<String> = f.countries.iter().map(|c| c.to_string()).collect();
        assert_eq!(countries, vec!["BE", "LU"]);
        assert_eq!(
            f.expires_at.map(crate::domain::types::fmt_time).as_deref(),
            Some("2027-01-31T00:00:00.000000Z")
        );
        assert_eq!(f.area.unwrap().radius_km, 30.0);
        assert_eq!(f.body_markdown, "Body in Markdown.\n");
    }

    #[test]
    fn errors_name_the_line() {
        let (line, msg) =
            parse("---\nslug: a\nlocale: en\ntitle: T\ncategory: recipe\n---\nx").unwrap_err();
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("recipe"));
        let (line, _) =
            parse("---\nslug: a\nlocale: en\ntitle: [unclosed\ncategory: faq\n---\nx").unwrap_err();
        assert!((4..=5).contains(&line), "{line}");
        let (line, msg) = parse("no front matter").unwrap_err();
        assert_eq!(line, 1, "{msg}");
        let (line, msg) =
            parse("---\nslug: a\nlocale: en\ntitle: T\ncategory: faq\ncolour: red\n---\n")
                .unwrap_err();
        assert!(msg.contains("colour"), "{line}: {msg}");
    }
}
