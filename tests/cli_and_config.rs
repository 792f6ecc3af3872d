//! The `lingshi` binary: `agent add` refuses bad input with a message a person can act
//! on and never prints the password; a bad configuration stops `serve` at once naming
//! the problem; `LINGSHI_BIND` and `--bind` override the file; secrets never leak.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;

const SECRET_PASSWORD: &str = "Zebra-Quartz-9931";

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Run the binary to completion (at most 60 s) with extra environment and stdin.
async fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_lingshi"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("LINGSHI_BIND")
        .env_remove("LINGSHI_DATA_DIR")
        .env_remove("LINGSHI_IDENTITY__HS256_SECRET")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("lingshi binary runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(format!("{s}\n").as_bytes()).await.unwrap();
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("lingshi {args:?} did not finish within 60 s"))
        .unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir.path().join("data"));
    let file = write_config_file(dir.path(), &config);
    (dir, file)
}

async fn agent_add(
    dir: &Path,
    config_file: &Path,
    email: &str,
    mission: &str,
    role: &str,
    password: &str,
) -> Out {
    let file = config_file.to_str().unwrap();
    run(
        dir,
        &[
            "--config",
            file,
            "agent",
            "add",
            "--email",
            email,
            "--name",
            "Test Agent",
            "--mission",
            mission,
            "--role",
            role,
            "--password-stdin",
        ],
        &[],
        Some(password),
    )
    .await
}

fn assert_failed(out: &Out, what: &str) {
    assert!(
        matches!(out.code, Some(c) if c != 0),
        "{what}: expected a non-zero exit, got {:?}\nstdout: {}\nstderr: {}",
        out.code,
        out.stdout,
        out.stderr
    );
}

#[tokio::test]
async fn agent_add_refuses_bad_input_and_never_prints_the_password() {
    let (dir, file) = setup();
    let d = dir.path();
    let mut outputs = vec![];

    let out = agent_add(
        d,
        &file,
        "a@test.example",
        "nowhere",
        "agent",
        SECRET_PASSWORD,
    )
    .await;
    assert_failed(&out, "unknown mission");
    assert!(out.stderr.contains("nowhere"), "{}", out.stderr);
    for m in ["mfa", "be", "et", "us"] {
        assert!(
            out.stderr.contains(m),
            "configured mission {m} not named: {}",
            out.stderr
        );
    }
    outputs.push(out);

    // One of several missions unknown.
    let out = agent_add(
        d,
        &file,
        "a@test.example",
        "be,mars",
        "agent",
        SECRET_PASSWORD,
    )
    .await;
    assert_failed(&out, "one unknown mission of two");
    assert!(out.stderr.contains("mars"), "{}", out.stderr);
    outputs.push(out);

    let out = agent_add(
        d,
        &file,
        "a@test.example",
        "be",
        "superuser",
        SECRET_PASSWORD,
    )
    .await;
    assert_failed(&out, "bad role");
    assert!(
        out.stderr.contains("agent")
            && out.stderr.contains("editor")
            && out.stderr.contains("admin"),
        "{}",
        out.stderr
    );
    outputs.push(out);

    let out = agent_add(d, &file, "a@test.example", "be", "agent", "short7!").await;
    assert_failed(&out, "7-character password");
    assert!(
        out.stderr.contains('8') && out.stderr.contains("password"),
        "{}",
        out.stderr
    );
    assert!(!out.all().contains("short7!"));

    let out = agent_add(d, &file, "a@test.example", "be", "agent", "").await;
    assert_failed(&out, "empty password");

    // Nothing was created by the refused attempts: the first real add succeeds.
    let out = agent_add(
        d,
        &file,
        "a@test.example",
        "be,et",
        "agent",
        SECRET_PASSWORD,
    )
    .await;
    assert_eq!(out.code, Some(0), "agent add: {}", out.stderr);
    assert!(out.stdout.contains("a@test.example"), "{}", out.stdout);
    outputs.push(out);

    let out = agent_add(d, &file, "a@test.example", "us", "editor", SECRET_PASSWORD).await;
    assert_failed(&out, "duplicate email");
    assert!(
        out.stderr.contains("a@test.example") && out.stderr.contains("already exists"),
        "{}",
        out.stderr
    );
    outputs.push(out);

    // Email addresses compare without regard to case.
    let out = agent_add(d, &file, "A@Test.Example", "be", "agent", SECRET_PASSWORD).await;
    assert_failed(&out, "duplicate email in other case");
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    outputs.push(out);

    let out = agent_add(
        d,
        &file,
        "admin@test.example",
        "mfa",
        "admin",
        SECRET_PASSWORD,
    )
    .await;
    assert_eq!(out.code, Some(0), "admin add: {}", out.stderr);
    outputs.push(out);

    for out in &outputs {
        assert!(
            !out.all().contains(SECRET_PASSWORD),
            "the password was printed: {}",
            out.all()
        );
    }

    // No terminal and no --password-stdin: a clear refusal, not a hang.
    let out = run(
        d,
        &[
            "--config",
            file.to_str().unwrap(),
            "agent",
            "add",
            "--email",
            "b@test.example",
            "--name",
            "B",
            "--mission",
            "be",
        ],
        &[],
        None,
    )
    .await;
    assert_failed(&out, "no password source");
    assert!(out.stderr.contains("password-stdin"), "{}", out.stderr);
}

/// Write a config file from raw TOML and run `serve` on it; it must fail quickly.
async fn serve_must_fail(toml: &str, env: &[(&str, &str)]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\n{toml}",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = run(
        dir.path(),
        &["--config", file.to_str().unwrap(), "serve"],
        env,
        None,
    )
    .await;
    assert_failed(&out, toml);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a bad configuration must stop the server promptly"
    );
    out
}

const MISSIONS: &str = r#"
[[missions]]
id = "mfa"
name = "Consular Protection Center"
countries = []
[[missions]]
id = "be"
name = "Embassy in Belgium"
countries = ["BE", "LU"]
"#;

#[tokio::test]
async fn serve_refuses_a_bad_configuration_naming_the_problem() {
    let out = serve_must_fail(
        &format!("bind = \"127.0.0.1:0\"\ndefault_mission = \"atlantis\"\n{MISSIONS}"),
        &[],
    )
    .await;
    assert!(
        out.stderr.contains("default_mission") && out.stderr.contains("atlantis"),
        "{}",
        out.stderr
    );

    let out = serve_must_fail(
        &format!(
            "bind = \"127.0.0.1:0\"\ndefault_mission = \"mfa\"\n{MISSIONS}\n[[missions]]\nid = \"lux\"\nname = \"Embassy in Luxembourg\"\ncountries = [\"LU\"]\n"
        ),
        &[],
    )
    .await;
    assert!(
        out.stderr.contains("LU") && out.stderr.contains("be") && out.stderr.contains("lux"),
        "{}",
        out.stderr
    );

    let out = serve_must_fail(
        &format!("bind = \"nonsense\"\ndefault_mission = \"mfa\"\n{MISSIONS}"),
        &[],
    )
    .await;
    assert!(
        out.stderr.contains("bind") && out.stderr.contains("nonsense"),
        "{}",
        out.stderr
    );

    // The same checks apply to overrides from the environment.
    let out = serve_must_fail(
        &format!("bind = \"127.0.0.1:0\"\ndefault_mission = \"mfa\"\n{MISSIONS}"),
        &[("LINGSHI_BIND", "nonsense:port")],
    )
    .await;
    assert!(
        out.stderr.contains("bind") && out.stderr.contains("nonsense:port"),
        "{}",
        out.stderr
    );

    // A config file that does not exist is named.
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["--config", "no-such-file.toml", "serve"],
        &[],
        None,
    )
    .await;
    assert_failed(&out, "missing config file");
    assert!(out.stderr.contains("no-such-file.toml"), "{}", out.stderr);
}

#[tokio::test]
async fn secrets_from_the_environment_never_appear_in_output() {
    // Whatever makes the start fail, the identity secret is not echoed. (A numeric
    // secret has its own test below.)
    for secret in ["hs256-Sup3r-S3cret-Value", "x9-8675309-Jenny"] {
        let env = [("LINGSHI_IDENTITY__HS256_SECRET", secret)];
        let cases = [
            format!("bind = \"nonsense\"\ndefault_mission = \"mfa\"\n{MISSIONS}"),
            format!("bind = \"127.0.0.1:0\"\ndefault_mission = \"atlantis\"\n{MISSIONS}"),
            format!("bind = \"127.0.0.1:0\"\ndefault_mission = \"mfa\"\nlog_format = \"xml\"\n{MISSIONS}"),
            // A wrongly typed setting elsewhere makes the whole extraction fail.
            format!("bind = \"127.0.0.1:0\"\ndefault_mission = \"mfa\"\n[limits]\ntext_max_chars = \"many\"\n{MISSIONS}"),
        ];
        for toml in &cases {
            let out = serve_must_fail(toml, &env).await;
            assert!(
                !out.all().contains(secret),
                "secret leaked for config {toml}:\n{}",
                out.all()
            );
        }
    }
}

/// A numeric-looking secret is still a secret: a server given one either starts, or
/// refuses without printing it. (Environment values are typed by the config loader, so
/// an all-digit secret is read as a number.)
#[tokio::test]
async fn a_numeric_secret_is_not_printed_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    let port = free_port();
    config.bind = format!("127.0.0.1:{port}");
    let file = write_config_file(dir.path(), &config);
    let secret = "1234567890123456";
    let mut child = spawn_serve(
        dir.path(),
        &file,
        &[],
        &[("LINGSHI_IDENTITY__HS256_SECRET", secret)],
    );
    match wait_healthy(&mut child, port).await {
        Ok(()) => {
            let _ = child.kill().await;
        }
        Err(_) => {
            let out = child.wait_with_output().await.unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!all.contains(secret), "secret leaked: {all}");
        }
    }
}

fn spawn_serve(
    dir: &Path,
    config_file: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_lingshi"))
        .arg("--config")
        .arg(config_file)
        .arg("serve")
        .args(extra)
        .current_dir(dir)
        .env_remove("LINGSHI_BIND")
        .env_remove("LINGSHI_DATA_DIR")
        .env_remove("LINGSHI_IDENTITY__HS256_SECRET")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("lingshi binary runs")
}

/// Wait until `/healthz` answers 200 on `port`; `Err` if the process exited first.
async fn wait_healthy(child: &mut tokio::process::Child, port: u16) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("exited with {status}"));
        }
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            assert_eq!(r.status().as_u16(), 200);
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("not healthy within 90 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn refused(port: u16) -> bool {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
}

#[tokio::test]
async fn lingshi_bind_and_bind_flag_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir.path().join("data"));
    let file_port = free_port();
    config.bind = format!("127.0.0.1:{file_port}");
    let file = write_config_file(dir.path(), &config);

    // LINGSHI_BIND beats the file.
    let env_port = free_port();
    let env_addr = format!("127.0.0.1:{env_port}");
    let mut child = spawn_serve(dir.path(), &file, &[], &[("LINGSHI_BIND", &env_addr)]);
    if let Err(e) = wait_healthy(&mut child, env_port).await {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "serve with LINGSHI_BIND={env_addr}: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        refused(file_port).await,
        "also listening on the file's bind"
    );
    child.kill().await.unwrap();

    // --bind beats both.
    let flag_port = free_port();
    let flag_addr = format!("127.0.0.1:{flag_port}");
    let mut child = spawn_serve(
        dir.path(),
        &file,
        &["--bind", &flag_addr],
        &[("LINGSHI_BIND", &env_addr)],
    );
    if let Err(e) = wait_healthy(&mut child, flag_port).await {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "serve --bind {flag_addr}: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(refused(file_port).await, "listening on the file's bind");
    assert!(refused(env_port).await, "listening on LINGSHI_BIND");
    child.kill().await.unwrap();

    // LINGSHI_DATA_DIR moves the data: the database appears there.
    let other = dir.path().join("elsewhere");
    let port = free_port();
    let mut child = spawn_serve(
        dir.path(),
        &file,
        &["--bind", &format!("127.0.0.1:{port}")],
        &[("LINGSHI_DATA_DIR", other.to_str().unwrap())],
    );
    if let Err(e) = wait_healthy(&mut child, port).await {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "serve with LINGSHI_DATA_DIR: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.kill().await.unwrap();
    assert!(
        other.is_dir() && std::fs::read_dir(&other).unwrap().next().is_some(),
        "nothing was written under LINGSHI_DATA_DIR"
    );
}
