//! Real-browser test fixture: headless Chromium driven over WebDriver (`chromedriver`,
//! started here on a free port) by fantoccini. Controls are found the way a screen
//! reader finds them: by role and accessible name as Chromium computes them
//! (WebDriver's computed role and label), never by CSS class.
//!
//! Without `chromedriver`/`chromium` the tests print why and return, unless
//! `LINGSHI_REQUIRE_BROWSER` is set (CI sets it), in which case they fail.
#![allow(dead_code)]

pub mod flows;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::{Element, ElementRef};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

/// Chromium flags for running as root in a container, with nothing phoning home.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1400,900",
];

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| which(n))
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One `chromedriver` for a test; every page is its own browser with a fresh profile.
/// Dropping it kills chromedriver and every browser it started (its process group).
pub struct Browser {
    driver: Child,
    pub url: String,
    chromium: PathBuf,
    profiles: Vec<tempfile::TempDir>,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.driver.id() as i32;
        // SAFETY: signalling a process group this fixture created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Start chromedriver, or `None` (with a printed reason) when the browser is not
    /// installed and `LINGSHI_REQUIRE_BROWSER` is unset.
    pub async fn start() -> Option<Browser> {
        let driver_bin = which("chromedriver");
        let chromium = chromium();
        let (Some(driver_bin), Some(chromium)) = (driver_bin, chromium) else {
            let msg = "browser tests need `chromedriver` and `chromium` \
                       (Debian: apt-get install chromium chromium-driver fonts-noto-cjk)";
            if std::env::var_os("LINGSHI_REQUIRE_BROWSER").is_some() {
                panic!("{msg}, and LINGSHI_REQUIRE_BROWSER is set");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        // Two TLS backends are in the test graph (the server's client and the WebDriver
        // client's); name one so that rustls does not have to guess.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let log_dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let log = log_dir.path().join(format!("chromedriver-{port}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(&driver_bin);
            cmd.arg(format!("--port={port}"))
                .arg("--log-level=WARNING")
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.try_clone().unwrap()))
                .stderr(Stdio::from(out));
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let driver = cmd.spawn().expect("chromedriver starts");
            let url = format!("http://127.0.0.1:{port}");
            let mut browser = Browser {
                driver,
                url: url.clone(),
                chromium: chromium.clone(),
                profiles: vec![],
                log: log.clone(),
                _log_dir: tempfile::tempdir().unwrap(),
            };
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = browser.driver.try_wait() {
                    break;
                }
                if let Ok(r) = http.get(format!("{url}/status")).send().await {
                    if r.status().is_success() {
                        browser._log_dir = log_dir;
                        return Some(browser);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            eprintln!(
                "chromedriver on port {port} did not come up:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("chromedriver did not start");
    }

    /// A new browser whose preferred language is `lang` (`zh-CN` or `en-US`).
    pub async fn page(&mut self, lang: &str) -> Page {
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--lang={lang}"));
        args.push(format!("--accept-lang={lang}"));
        let short = lang.split('-').next().unwrap_or(lang);
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": self.chromium,
                "args": args,
                "prefs": {"intl.accept_languages": format!("{lang},{short}")},
            }),
        );
        let client = ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "browser session: {e}\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            });
        self.profiles.push(profile);
        Page { c: client }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// WebDriver's "Get Computed Role" / "Get Computed Label": what assistive technology
/// is told about an element.
#[derive(Debug)]
struct Computed {
    element: String,
    what: &'static str,
}

impl WebDriverCompatibleCommand for Computed {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/element/{}/{}",
            session_id.unwrap_or_default(),
            self.element,
            self.what
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::GET, None)
    }
}

/// The browser's console log (chromedriver's logging extension), to explain failures.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_string()),
        )
    }
}

/// A Chrome DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Candidate elements for a role, best guesses first: explicit `role`, or the HTML
/// elements whose implicit role it is; visible ones only; those whose rough name holds
/// the wanted text come first. The computed role and label decide in the end.
const CANDIDATES_JS: &str = r#"
const [role, want, root] = arguments;
const IMPLICIT = {
  button: 'button, input[type=button], input[type=submit], input[type=reset], input[type=file], summary',
  link: 'a[href]',
  textbox: 'input:not([type]), input[type=text], input[type=email], input[type=tel], input[type=url], input[type=password], textarea',
  searchbox: 'input[type=search]',
  combobox: 'select:not([multiple]):not([size]), input[list]',
  checkbox: 'input[type=checkbox]',
  radio: 'input[type=radio]',
  spinbutton: 'input[type=number]',
  heading: 'h1, h2, h3, h4, h5, h6',
  img: 'img',
  dialog: 'dialog',
  listitem: 'li',
  option: 'option',
  region: 'section, [role=region]',
  alert: '[role=alert]',
  status: '[role=status], output',
  navigation: 'nav',
  main: 'main',
  complementary: 'aside',
  table: 'table',
  group: 'fieldset, details',
  listbox: 'select[multiple], select[size]',
  article: 'article',
};
const sel = `[role="${role}"]` + (IMPLICIT[role] ? `, ${IMPLICIT[role]}` : '');
const norm = (s) => (s || '').replace(/\s+/g, ' ').trim().toLowerCase();
const rough = (el) => {
  const parts = [];
  const by = el.getAttribute('aria-labelledby');
  if (by) for (const id of by.split(/\s+/)) parts.push(document.getElementById(id)?.textContent || '');
  parts.push(el.getAttribute('aria-label') || '');
  if (el.labels) for (const l of el.labels) parts.push(l.textContent);
  parts.push(el.getAttribute('alt') || '', el.getAttribute('title') || '', el.getAttribute('placeholder') || '');
  parts.push(el.textContent || '');
  return norm(parts.join(' '));
};
const visible = (el) => el.getClientRects().length > 0 || el.tagName === 'OPTION';
const w = norm(want);
const all = [...(root || document).querySelectorAll(sel)].filter(visible);
const likely = all.filter((el) => rough(el).includes(w));
const rest = all.filter((el) => !likely.includes(el));
return likely.concat(rest).slice(0, 40);
"#;

fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub struct Page {
    pub c: Client,
}

impl Page {
    pub async fn goto(&self, url: &str) {
        self.c.goto(url).await.expect("navigation");
    }

    pub async fn eval(&self, js: &str, args: Vec<Value>) -> Value {
        self.c
            .execute(js, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
    }

    async fn computed(&self, el: &Element, what: &'static str) -> String {
        let v = self
            .c
            .issue_cmd(Computed {
                element: el.element_id().to_string(),
                what,
            })
            .await
            .unwrap_or(Value::Null);
        v.as_str().unwrap_or_default().to_string()
    }

    /// Elements with `role` whose accessible name is `name` (exactly, or containing it).
    pub async fn all_by_role(&self, role: &str, name: &str, exact: bool) -> Vec<Element> {
        self.all_by_role_in(None, role, name, exact).await
    }

    /// Like [`Page::all_by_role`], looking only inside `root`.
    pub async fn all_by_role_in(
        &self,
        root: Option<&Element>,
        role: &str,
        name: &str,
        exact: bool,
    ) -> Vec<Element> {
        let root = root
            .map(|r| serde_json::to_value(r).unwrap())
            .unwrap_or(Value::Null);
        let found = match self
            .c
            .execute(CANDIDATES_JS, vec![json!(role), json!(name), root])
            .await
        {
            Ok(v) => v,
            Err(_) => return vec![],
        };
        let want = norm(name).to_lowercase();
        let mut out = vec![];
        for v in found.as_array().cloned().unwrap_or_default() {
            let Some(id) = v
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|x| x.as_str())
            else {
                continue;
            };
            let el = Element::from_element_id(self.c.clone(), ElementRef::from(id.to_string()));
            let r = self.computed(&el, "computedrole").await;
            // ARIA 1.3 renames `img` to `image`; Chromium reports either, by version.
            if r != role && !(role == "img" && r == "image") {
                continue;
            }
            let label = norm(&self.computed(&el, "computedlabel").await).to_lowercase();
            if (exact && label == want) || (!exact && label.contains(&want)) {
                out.push(el);
            }
        }
        out
    }

    /// Wait (up to `within`) for an element of `role` named `name`.
    pub async fn try_find(
        &self,
        role: &str,
        name: &str,
        exact: bool,
        within: Duration,
    ) -> Option<Element> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(el) = self.all_by_role(role, name, exact).await.into_iter().next() {
                return Some(el);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Inside `root`, the element of `role` whose name contains `part`; fails after 10 s.
    pub async fn find_in(&self, root: &Element, role: &str, part: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(el) = self
                .all_by_role_in(Some(root), role, part, false)
                .await
                .into_iter()
                .next()
            {
                return el;
            }
            if Instant::now() > deadline {
                self.fail(&format!("no {role} with a name containing {part:?} there"))
                    .await
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element of `role` whose accessible name is exactly `name`; fails after 10 s.
    pub async fn find(&self, role: &str, name: &str) -> Element {
        match self
            .try_find(role, name, true, Duration::from_secs(10))
            .await
        {
            Some(el) => el,
            None => self.fail(&format!("no {role} named {name:?}")).await,
        }
    }

    /// The element of `role` whose accessible name contains `part`; fails after 10 s.
    pub async fn find_containing(&self, role: &str, part: &str) -> Element {
        match self
            .try_find(role, part, false, Duration::from_secs(10))
            .await
        {
            Some(el) => el,
            None => {
                self.fail(&format!("no {role} with a name containing {part:?}"))
                    .await
            }
        }
    }

    /// Fail with what the page shows, to see why.
    pub async fn fail(&self, what: &str) -> ! {
        let text = self
            .c
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let shot = screenshot_dir().join("failure.png");
        if let Ok(png) = self.c.screenshot().await {
            let _ = std::fs::write(&shot, png);
        }
        let log = self.console_log().await;
        panic!(
            "{what}\n--- page text ---\n{}\n--- browser console ---\n{}\n--- screenshot: {}",
            text.chars().take(3000).collect::<String>(),
            log.join("\n"),
            shot.display()
        );
    }

    /// Let `origin` read the position, and make the device report `lat`, `lon`.
    pub async fn set_location(&self, origin: &str, lat: f64, lon: f64) {
        self.c
            .issue_cmd(Cdp {
                cmd: "Browser.grantPermissions",
                params: json!({"origin": origin, "permissions": ["geolocation"]}),
            })
            .await
            .expect("grant geolocation");
        self.c
            .issue_cmd(Cdp {
                cmd: "Emulation.setGeolocationOverride",
                params: json!({"latitude": lat, "longitude": lon, "accuracy": 25}),
            })
            .await
            .expect("set the position");
    }

    /// What the page wrote to the browser console since the last call.
    pub async fn console_log(&self) -> Vec<String> {
        let v = self.c.issue_cmd(BrowserLog).await.unwrap_or(Value::Null);
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        format!(
                            "{} {}",
                            e["level"].as_str().unwrap_or(""),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Click the element of `role` named `name`; found again if the page redrew it
    /// between finding and clicking.
    pub async fn click(&self, role: &str, name: &str) {
        for attempt in 0.. {
            let el = self.find(role, name).await;
            match el.click().await {
                Ok(()) => return,
                Err(e) if attempt < 5 => {
                    eprintln!("clicking {role} {name:?} again: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("click {role} {name:?}: {e}"),
            }
        }
    }

    /// Type into the text field named `name` (a textbox, searchbox or spinbutton).
    pub async fn fill(&self, name: &str, text: &str) {
        let mut el = None;
        for role in ["textbox", "searchbox", "spinbutton", "combobox"] {
            if let Some(e) = self.all_by_role(role, name, true).await.into_iter().next() {
                el = Some(e);
                break;
            }
        }
        let el = match el {
            Some(e) => e,
            None => self.find("textbox", name).await,
        };
        el.clear().await.ok();
        el.send_keys(text).await.expect("typing");
    }

    /// Choose `value` in the drop-down list named `name`.
    pub async fn choose(&self, name: &str, value: &str) {
        let el = self.find("combobox", name).await;
        el.select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choose {value} in {name:?}: {e}"));
    }

    pub async fn body_text(&self) -> String {
        self.eval("return document.body.innerText", vec![])
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until the visible page text contains `text`.
    pub async fn wait_text(&self, text: &str) {
        self.wait_text_for(text, Duration::from_secs(15)).await
    }

    pub async fn wait_text_for(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.body_text().await.contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.fail(&format!("the page never showed {text:?}")).await
    }

    /// Wait until `js` (a function body) returns true.
    pub async fn wait_js(&self, what: &str, js: &str, args: Vec<Value>, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(v) = self.c.execute(js, args.clone()).await {
                if v.as_bool() == Some(true) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.fail(&format!("timed out waiting for {what}")).await
    }

    /// How many list items in the region named `region` show `text` as their message
    /// body (a message shown twice counts twice).
    pub async fn count_messages(&self, region: &str, text: &str) -> usize {
        let v = self
            .eval(
                r#"const [region, text] = arguments;
                const r = [...document.querySelectorAll('[role=region]')]
                    .find((e) => e.getAttribute('aria-label') === region && e.getClientRects().length);
                if (!r) return -1;
                return [...r.querySelectorAll('li')]
                    .filter((li) => [...li.querySelectorAll('p')].some((p) => p.textContent === text)).length;"#,
                vec![json!(region), json!(text)],
            )
            .await;
        let n = v.as_i64().unwrap_or(-1);
        assert!(n >= 0, "no region named {region:?} on the page");
        n as usize
    }

    /// Run axe-core on the page; the serious and critical violations.
    pub async fn axe(&self) -> Vec<Value> {
        let loaded = self
            .eval("return typeof window.axe === 'object'", vec![])
            .await;
        if loaded.as_bool() != Some(true) {
            let src = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vendor/axe-core/axe.min.js"),
            )
            .expect("tests/vendor/axe-core/axe.min.js");
            self.c
                .execute(&format!("{src}\n;return true;"), vec![])
                .await
                .expect("axe-core loads");
        }
        let r = self
            .c
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] })
                  .then((r) => done(JSON.stringify(r.violations)))
                  .catch((e) => done(JSON.stringify([{ id: 'axe-error', impact: 'critical', description: String(e) }])));"#,
                vec![],
            )
            .await
            .expect("axe runs");
        let all: Vec<Value> = serde_json::from_str(r.as_str().unwrap_or("[]")).unwrap();
        all.into_iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect()
    }

    /// Assert axe-core finds nothing serious or critical; print what it finds.
    pub async fn assert_accessible(&self, what: &str) {
        let v = self.axe().await;
        if !v.is_empty() {
            let report: Vec<String> = v
                .iter()
                .map(|x| {
                    let nodes: Vec<String> = x["nodes"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .take(5)
                                .map(|n| format!("{} {}", n["target"], n["failureSummary"]))
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "[{}] {}: {}\n    {}",
                        x["impact"].as_str().unwrap_or(""),
                        x["id"].as_str().unwrap_or(""),
                        x["help"].as_str().unwrap_or(""),
                        nodes.join("\n    ")
                    )
                })
                .collect();
            panic!(
                "axe-core: {} serious/critical violations on {what}:\n{}",
                v.len(),
                report.join("\n")
            );
        }
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.c.screenshot().await.expect("screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Whether a JavaScript dialog (alert, confirm) is open.
    pub async fn alert_open(&self) -> bool {
        self.c.get_alert_text().await.is_ok()
    }

    pub async fn close(self) {
        let _ = self.c.close().await;
    }
}

/// Poll `f` until it returns `Some`, or fail after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
