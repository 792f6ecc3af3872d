//! Throwaway outside services for tests: a Postgres cluster (`initdb` + `postgres`)
//! and a NATS server, each started once per test process on a free port and a temp
//! dir, stopped and removed when the process exits. Every test gets a fresh database.
//!
//! - `LINGSHI_TEST_BACKEND=postgres` runs the whole suite on Postgres.
//! - `LINGSHI_PG_BIN` names the folder of `initdb` and `postgres` (default: the
//!   newest `/usr/lib/postgresql/*/bin`); `LINGSHI_NATS_SERVER` the `nats-server`
//!   binary (default: on `PATH` or `/usr/sbin`).
//! - When a binary is missing the test says so and skips (or runs on SQLite), unless
//!   `LINGSHI_REQUIRE_SERVICES` is set: then it fails.
//!
//! Postgres refuses to run as root. Under root the cluster runs as the `postgres`
//! user (the child switches user before it executes, like `runuser -u postgres`) on a
//! temp dir that user owns. The children are started from one thread that lives as
//! long as the process, with a parent-death signal, so a test process that ends in any
//! way (even a panic or kill -9) takes its services with it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn services_required() -> bool {
    std::env::var_os("LINGSHI_REQUIRE_SERVICES").is_some_and(|v| !v.is_empty())
}

pub fn postgres_backend() -> bool {
    std::env::var("LINGSHI_TEST_BACKEND").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run `f` on a thread that never exits, so children spawned there (with a
/// parent-death signal, which follows the spawning thread) live as long as the
/// process.
fn on_keeper_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static KEEPER: OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("test-services".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        std::sync::Mutex::new(tx)
    });
    let (tx, rx) = std::sync::mpsc::channel();
    keeper
        .lock()
        .unwrap()
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .unwrap();
    rx.recv().unwrap()
}

/// Die with the parent (set after any user switch, which would clear it).
fn die_with_parent(cmd: &mut Command, signal: i32) {
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The `postgres` account to run the cluster as when this process is root.
fn postgres_account() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        panic!("tests run as root and there is no `postgres` user to run the Postgres cluster as");
    }
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn pg_bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LINGSHI_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("postgres").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

/// A running throwaway Postgres cluster.
pub struct PgCluster {
    port: u16,
    bin: PathBuf,
}

static PG: OnceLock<Option<PgCluster>> = OnceLock::new();
static DB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The process's Postgres cluster, started on first use; `None` (after saying why)
/// when its binaries are missing and services are not required.
pub fn postgres() -> Option<&'static PgCluster> {
    PG.get_or_init(|| {
        let Some(bin) = pg_bin_dir().filter(|b| b.join("initdb").exists()) else {
            let msg = "Postgres binaries not found (initdb, postgres in /usr/lib/postgresql/*/bin or LINGSHI_PG_BIN); install Debian's `postgresql`";
            if services_required() {
                panic!("{msg} (LINGSHI_REQUIRE_SERVICES is set)");
            }
            eprintln!("SKIP: {msg}");
            return None;
        };
        Some(on_keeper_thread(move || PgCluster::start(bin)))
    })
    .as_ref()
}

impl PgCluster {
    fn start(bin: PathBuf) -> PgCluster {
        let account = postgres_account();
        let dir = std::env::temp_dir().join(format!(
            "lingshi-pg-{}-{}",
            std::process::id(),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.join("data");
        let as_owner = |cmd: &mut Command| {
            if let Some((uid, gid)) = account {
                cmd.uid(uid).gid(gid);
            }
            cmd.env("HOME", &dir).current_dir(&dir);
        };
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_owner(&mut initdb);
        let out = initdb.output().expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for attempt in 0..5 {
            let port = free_port();
            let log = dir.join(format!("postgres-{attempt}.log"));
            // A shell owns the server: when this process dies it is signalled, stops
            // the server and removes the whole temp dir.
            let script = r#"
                "$1" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 \
                    -c fsync=off -c full_page_writes=off -c max_connections=400 \
                    -c shared_buffers=64MB >"$5" 2>&1 &
                pid=$!
                trap 'kill -INT $pid 2>/dev/null; wait $pid; rm -rf "$6"; exit 0' TERM INT HUP
                wait $pid
            "#;
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(script)
                .arg("sh")
                .arg(bin.join("postgres"))
                .arg(&data)
                .arg(port.to_string())
                .arg(&dir)
                .arg(&log)
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            as_owner(&mut sh);
            die_with_parent(&mut sh, libc::SIGTERM);
            let mut child = sh.spawn().expect("sh runs");
            let cluster = PgCluster {
                port,
                bin: bin.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if cluster.psql("postgres", "SELECT 1").is_ok() {
                    // The shell is reaped by nobody: it ends with the process.
                    std::mem::forget(child);
                    return cluster;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken: try another
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!(
                        "postgres did not start within 60 s:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("could not start postgres on a free port");
    }

    /// Run one SQL statement with `psql`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-t", "-A"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(db)
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// A new empty database; its `postgres://` URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "t{}_{}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::now_v7().simple().to_string()[26..]
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        self.url(&name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

/// A running throwaway NATS server.
pub struct Nats {
    pub url: String,
}

static NATS: OnceLock<Option<Nats>> = OnceLock::new();

fn nats_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LINGSHI_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
}

/// The process's NATS server, started on first use; `None` (after saying why) when
/// `nats-server` is missing and services are not required.
pub fn nats() -> Option<&'static Nats> {
    NATS.get_or_init(|| {
        let Some(bin) = nats_binary() else {
            let msg = "nats-server not found (PATH, /usr/sbin or LINGSHI_NATS_SERVER); install Debian's `nats-server`";
            if services_required() {
                panic!("{msg} (LINGSHI_REQUIRE_SERVICES is set)");
            }
            eprintln!("SKIP: {msg}");
            return None;
        };
        Some(on_keeper_thread(move || Nats::start(&bin)))
    })
    .as_ref()
}

impl Nats {
    fn start(bin: &Path) -> Nats {
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(bin);
            cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            die_with_parent(&mut cmd, libc::SIGTERM);
            let mut child = cmd.spawn().expect("nats-server runs");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    std::mem::forget(child);
                    return Nats {
                        url: format!("nats://127.0.0.1:{port}"),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("nats-server did not start within 20 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("could not start nats-server on a free port");
    }
}
