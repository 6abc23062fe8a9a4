//! Throwaway PostgreSQL, NATS and Redis servers on free loopback ports, for tests and for
//! trying the shared backend on one machine.
//!
//! [`Servers::shared`] starts one set per process (the first caller starts them; every
//! caller then works in a namespace of its own, [`Servers::namespace`]). The servers run
//! from a temporary directory and die with the process: each child is started with a
//! parent-death signal from a thread that lives as long as the process. When
//! `STEERFEED_TEST_POSTGRES_URL`, `STEERFEED_TEST_NATS_URL` and `STEERFEED_TEST_REDIS_URL`
//! are all set, those servers are used instead and nothing is started.
//! [`RedisCluster::start`] starts a Redis Cluster of its own.
//!
//! What it needs on the machine: PostgreSQL's `initdb` and `postgres` (Debian's
//! `postgresql` package: `/usr/lib/postgresql/<version>/bin`, or `STEERFEED_PG_BIN`),
//! and a `nats-server` that can fsync every acknowledged message, 2.10 or later
//! (`scripts/setup.sh` fetches 2.15.1 into `$STEERFEED_CACHE/nats/`; or
//! `STEERFEED_NATS_SERVER`), and `redis-server` with `redis-cli` (Debian's
//! `redis-server` package, or `STEERFEED_REDIS_SERVER` naming the server, `redis-cli`
//! beside it). As root, PostgreSQL runs as the `postgres` user, which Debian's package
//! creates.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the servers listen.
#[derive(Debug, Clone)]
pub struct Servers {
    /// `postgres://` URL of the PostgreSQL server.
    pub postgres_url: String,
    /// `nats://` URL of the NATS server (JetStream on, every message fsynced).
    pub nats_url: String,
    /// `redis://` URL of the Redis server.
    pub redis_url: String,
}

static SHARED: OnceLock<std::result::Result<Servers, String>> = OnceLock::new();
static NAMESPACES: AtomicU64 = AtomicU64::new(0);

impl Servers {
    /// The process's servers, started on first use (or the configured ones).
    pub fn shared() -> std::result::Result<&'static Servers, String> {
        SHARED
            .get_or_init(|| {
                if let (Ok(pg), Ok(nats), Ok(redis)) = (
                    std::env::var("STEERFEED_TEST_POSTGRES_URL"),
                    std::env::var("STEERFEED_TEST_NATS_URL"),
                    std::env::var("STEERFEED_TEST_REDIS_URL"),
                ) {
                    return Ok(Servers {
                        postgres_url: pg,
                        nats_url: nats,
                        redis_url: redis,
                    });
                }
                start_kept()
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A namespace no other caller in this process (nor, very likely, any other process
    /// on these servers) has used: lower-case letters and digits.
    pub fn namespace(prefix: &str) -> String {
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{prefix}{}x{n}x{nanos:x}", std::process::id())
    }

    /// Runs one statement on the PostgreSQL server, on a connection of its own, and
    /// answers the rows it changed (or, for a `SELECT`, returned): for a test to look
    /// at the logs, or to do what an operator (or time) would, such as ageing a
    /// replica's last report.
    pub fn sql(&self, statement: &str) -> std::result::Result<u64, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime for the statement: {e}"))?;
        runtime.block_on(async {
            let (client, conn) = tokio_postgres::connect(&self.postgres_url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connecting to {}: {e}", self.postgres_url))?;
            let conn = tokio::spawn(conn);
            let changed = client
                .execute(statement, &[])
                .await
                .map_err(|e| format!("{statement}: {e}"));
            drop(client);
            let _ = conn.await;
            changed
        })
    }
}

/// Starts the servers from a thread that parks for the rest of the process, so that the
/// children's parent-death signal fires only when the process ends.
fn start_kept() -> std::result::Result<Servers, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("steerfeed-test-servers".into())
        .spawn(move || {
            let started = start();
            let ok = started.is_ok();
            let _ = tx.send(
                started
                    .as_ref()
                    .map(|(s, _)| s.clone())
                    .map_err(Clone::clone),
            );
            if ok {
                // The children and their directory live as long as this thread.
                let _keep = started;
                loop {
                    std::thread::park();
                }
            }
        })
        .map_err(|e| format!("could not start the servers' thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the servers' thread ended".to_string())?
}

fn start() -> std::result::Result<(Servers, OwnServers), String> {
    let own = OwnServers::start()?;
    Ok((own.servers.clone(), own))
}

/// Servers of one caller's own, which it may stop and start again (to test what a
/// process does while one is down); all are killed when this is dropped.
pub struct OwnServers {
    /// Where they listen (the same after a restart).
    pub servers: Servers,
    dir: tempfile::TempDir,
    pg_port: u16,
    nats_port: u16,
    redis_port: u16,
    postgres: Option<Child>,
    nats: Option<Child>,
    redis: Option<Child>,
}

impl OwnServers {
    /// Starts all three, on free loopback ports, from a new temporary directory.
    pub fn start() -> std::result::Result<OwnServers, String> {
        let dir = servers_dir()?;
        let (pg_port, nats_port, redis_port) = (free_port()?, free_port()?, free_port()?);
        init_postgres(dir.path())?;
        let mut own = OwnServers {
            servers: Servers {
                postgres_url: format!("postgres://{PG_USER}@127.0.0.1:{pg_port}/postgres"),
                nats_url: format!("nats://127.0.0.1:{nats_port}"),
                redis_url: format!("redis://127.0.0.1:{redis_port}"),
            },
            dir,
            pg_port,
            nats_port,
            redis_port,
            postgres: None,
            nats: None,
            redis: None,
        };
        own.start_postgres()?;
        own.start_nats()?;
        own.start_redis()?;
        Ok(own)
    }

    /// Starts Redis again on its port (after [`OwnServers::kill_redis`]); what it held is
    /// gone, as from a server that kept nothing on disk.
    pub fn start_redis(&mut self) -> std::result::Result<(), String> {
        if self.redis.is_none() {
            self.redis = Some(start_redis(self.dir.path(), self.redis_port, false)?);
        }
        Ok(())
    }

    /// Stops Redis without closing its connections (SIGSTOP, or SIGCONT when `paused`
    /// is false): a server that hangs.
    pub fn pause_redis(&mut self, paused: bool) -> std::result::Result<(), String> {
        pause(self.redis.as_ref(), "redis", paused)
    }

    /// Stops NATS without closing its connections, as [`OwnServers::pause_redis`] does
    /// Redis.
    pub fn pause_nats(&mut self, paused: bool) -> std::result::Result<(), String> {
        pause(self.nats.as_ref(), "nats", paused)
    }

    /// Kills Redis (SIGKILL).
    pub fn kill_redis(&mut self) {
        if let Some(mut c) = self.redis.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts PostgreSQL again on its data and port (after [`OwnServers::kill_postgres`]).
    pub fn start_postgres(&mut self) -> std::result::Result<(), String> {
        if self.postgres.is_none() {
            self.postgres = Some(run_postgres(self.dir.path(), self.pg_port)?);
        }
        Ok(())
    }

    /// Starts NATS again on its data and port (after [`OwnServers::kill_nats`]).
    pub fn start_nats(&mut self) -> std::result::Result<(), String> {
        if self.nats.is_none() {
            self.nats = Some(start_nats(self.dir.path(), self.nats_port)?);
        }
        Ok(())
    }

    /// Kills PostgreSQL (SIGKILL) and waits until its port is free.
    pub fn kill_postgres(&mut self) {
        if let Some(mut c) = self.postgres.take() {
            let _ = c.kill();
            let _ = c.wait();
            // Its backends notice the postmaster's death and leave.
            let start = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", self.pg_port)).is_ok()
                && start.elapsed() < START_TIMEOUT
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Kills NATS (SIGKILL).
    pub fn kill_nats(&mut self) {
        if let Some(mut c) = self.nats.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGSTOP to `server` when `paused`, else SIGCONT.
fn pause(server: Option<&Child>, name: &str, paused: bool) -> std::result::Result<(), String> {
    let Some(c) = server else {
        return Err(format!("{name} is not running"));
    };
    let signal = if paused { "-STOP" } else { "-CONT" };
    let status = Command::new("kill")
        .args([signal, &c.id().to_string()])
        .status()
        .map_err(|e| format!("kill {signal}: {e}"))?;
    if !status.success() {
        return Err(format!("kill {signal}: {status}"));
    }
    Ok(())
}

impl Drop for OwnServers {
    fn drop(&mut self) {
        self.kill_nats();
        self.kill_redis();
        if let Some(mut c) = self.postgres.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The database user the servers are initialised with.
const PG_USER: &str = "steerfeed";

/// The start of the servers' directory names; the process id follows.
const DIR_PREFIX: &str = "steerfeed-servers-";

/// A new directory for servers of this process (after removing those of processes that
/// ended).
fn servers_dir() -> std::result::Result<tempfile::TempDir, String> {
    remove_stale_dirs();
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))
}

/// Removes the directories of servers whose process has ended (a process ends without
/// dropping what a static holds).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn free_port() -> std::result::Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

/// The directory holding `initdb` and `postgres`.
fn postgres_bin() -> std::result::Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("STEERFEED_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(|| {
        "PostgreSQL is not installed: apt-get install postgresql (or set STEERFEED_PG_BIN)"
            .to_string()
    })
}

/// The `nats-server` binary.
fn nats_bin() -> std::result::Result<PathBuf, String> {
    if let Ok(p) = std::env::var("STEERFEED_NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("STEERFEED_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/steerfeed")))
        .unwrap_or_else(|| PathBuf::from("/tmp/.cache/steerfeed"));
    let p = cache.join("nats/nats-server");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run scripts/setup.sh (or set STEERFEED_NATS_SERVER)",
            p.display()
        ))
    }
}

/// The uid and gid PostgreSQL runs as: `postgres` when this process is root (the
/// server refuses to run as root), else this process's own.
fn postgres_identity() -> std::result::Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: `name` is a NUL-terminated string; the returned record is read at once,
    // before any other call that could reuse its static storage.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(
            "running as root and there is no `postgres` user to run PostgreSQL as \
                    (Debian's postgresql package creates it)"
                .into(),
        );
    }
    // SAFETY: `pw` is non-null and points to the record getpwnam returned.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

/// A command that runs as `identity` (when given) and is killed when the thread that
/// starts it ends.
fn child_command(program: &Path, identity: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = identity
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            // After the credentials change, which would clear it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn chown(path: &Path, identity: Option<(u32, u32)>) -> std::result::Result<(), String> {
    if let Some((uid, gid)) = identity {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Waits until `log` holds a line containing `ready`, or the child exits.
fn wait_ready(child: &mut Child, log: &Path, ready: &str, what: &str) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Ok(f) = std::fs::File::open(log)
            && BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains(ready))
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!(
                "{what} exited ({status}) before it was ready:\n{tail}"
            ));
        }
        if start.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            return Err(format!("{what} was not ready within {START_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates the database cluster in `dir/pg`.
fn init_postgres(dir: &Path) -> std::result::Result<(), String> {
    let bin = postgres_bin()?;
    let identity = postgres_identity()?;
    // The directory must be reachable by the server's user.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
    let data = dir.join("pg");
    std::fs::create_dir(&data).map_err(|e| format!("mkdir {}: {e}", data.display()))?;
    chown(&data, identity)?;
    let out = child_command(&bin.join("initdb"), identity)
        .args(["-D"])
        .arg(&data)
        .args([
            "-U",
            PG_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Runs PostgreSQL on the cluster in `dir/pg` and waits until it accepts connections.
fn run_postgres(dir: &Path, port: u16) -> std::result::Result<Child, String> {
    let bin = postgres_bin()?;
    let identity = postgres_identity()?;
    let log = dir.join("postgres.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("postgres log: {e}"))?;
    let mut child = child_command(&bin.join("postgres"), identity)
        .arg("-D")
        .arg(dir.join("pg"))
        .args(["-p", &port.to_string()])
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ])
        // A throwaway server: what a crash of the machine would lose does not matter.
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("postgres: {e}"))?;
    wait_ready(
        &mut child,
        &log,
        "database system is ready to accept connections",
        "postgres",
    )?;
    Ok(child)
}

fn start_nats(dir: &Path, port: u16) -> std::result::Result<Child, String> {
    let bin = nats_bin()?;
    let store = dir.join("jetstream");
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
            store.display().to_string()
        ),
    )
    .map_err(|e| format!("nats.conf: {e}"))?;
    let log = dir.join("nats.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("nats log: {e}"))?;
    let mut child = child_command(&bin, None)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("nats-server: {e}"))?;
    wait_ready(&mut child, &log, "Server is ready", "nats-server")?;
    Ok(child)
}

/// The `redis-server` binary.
fn redis_bin() -> PathBuf {
    std::env::var_os("STEERFEED_REDIS_SERVER")
        .map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

/// Runs `redis-server` on `port` with nothing kept on disk (a throwaway server), its
/// files in `dir/redis-<port>`; with `cluster`, as a node of a Redis Cluster.
fn start_redis(dir: &Path, port: u16, cluster: bool) -> std::result::Result<Child, String> {
    let data = dir.join(format!("redis-{port}"));
    std::fs::create_dir_all(&data).map_err(|e| format!("mkdir {}: {e}", data.display()))?;
    let log = data.join("redis.log");
    let mut cmd = child_command(&redis_bin(), None);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&data)
        .arg("--logfile")
        .arg(&log);
    if cluster {
        cmd.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "{}: {e} (apt-get install redis-server, or set STEERFEED_REDIS_SERVER)",
                redis_bin().display()
            )
        })?;
    wait_ready(
        &mut child,
        &log,
        "Ready to accept connections",
        "redis-server",
    )?;
    Ok(child)
}

/// A Redis Cluster of masters on free loopback ports, without replicas, every slot
/// assigned; killed when dropped.
pub struct RedisCluster {
    /// `redis://` URL of its first node (a client finds the others from it).
    pub url: String,
    /// Every node's port.
    pub ports: Vec<u16>,
    nodes: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3, as Redis requires) and joins them.
    pub fn start(masters: usize) -> std::result::Result<RedisCluster, String> {
        let dir = servers_dir()?;
        let ports = (0..masters)
            .map(|_| free_port())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut cluster = RedisCluster {
            url: format!("redis://127.0.0.1:{}", ports[0]),
            ports: ports.clone(),
            nodes: Vec::new(),
            _dir: dir,
        };
        for &p in &ports {
            cluster
                .nodes
                .push(start_redis(cluster._dir.path(), p, true)?);
        }
        let cli = redis_bin().with_file_name("redis-cli");
        let out = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", cli.display()))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // Every node must know every slot's owner before a client is told of them.
        let start = Instant::now();
        for &p in &ports {
            loop {
                let info = Command::new(&cli)
                    .args(["-p", &p.to_string(), "cluster", "info"])
                    .output()
                    .map_err(|e| format!("{}: {e}", cli.display()))?;
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                if start.elapsed() > START_TIMEOUT {
                    return Err(format!(
                        "the Redis Cluster was not ready within {START_TIMEOUT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(cluster)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
