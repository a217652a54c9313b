//! A real PgBouncer (transaction pooling, prepared statements tracked) in front of a test's
//! database, configured as `deploy/pgbouncer/pgbouncer.ini` configures production: one
//! database name per service, whose server connections get that service's `search_path`.
//!
//! The binary is `$PGBOUNCER`, else `pgbouncer` on the `PATH`; it must be 1.21 or later
//! (`scripts/install-pgbouncer.sh` builds 1.24 from Debian's source where the distribution
//! ships an older one).
use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use sqlx::postgres::PgConnectOptions;

/// The services' schemas, each reached through the PgBouncer database of the same name.
pub const SCHEMAS: [&str; 4] = ["queue", "catalog", "reservation", "wallet"];

/// A PgBouncer process; stopped when dropped.
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer in front of `direct`'s database.
    ///
    /// # Panics
    /// When `pgbouncer` is not installed (`scripts/test.sh` installs it) or does not start
    /// within 10 s.
    pub fn start(direct: &PgConnectOptions) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("concert-pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let database = direct.get_database().expect("a test database");
        let databases: String = SCHEMAS
            .iter()
            .map(|schema| {
                format!(
                    "{schema} = host={host} port={pg_port} dbname={database} user={user} \
                     connect_query='SET search_path TO {schema}; SET plan_cache_mode TO force_custom_plan; SET jit TO off'\n",
                    host = direct.get_host(),
                    pg_port = direct.get_port(),
                    user = direct.get_username(),
                )
            })
            .collect();
        let ini = format!(
            "[databases]\n{databases}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
             max_client_conn = 200\ndefault_pool_size = 6\nmax_prepared_statements = 200\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(dir.join("users.txt"), format!("\"{}\" \"\"\n", direct.get_username())).unwrap();
        // PgBouncer will not run as root; as root, it is told to switch to postgres.
        let binary = std::env::var("PGBOUNCER").unwrap_or_else(|_| "pgbouncer".into());
        let version = Command::new(&binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {binary} ({e}): scripts/install-pgbouncer.sh installs it"));
        let version = String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or_default().to_owned();
        let (major, minor) = version
            .strip_prefix("PgBouncer ")
            .and_then(|v| {
                let mut parts = v.split('.').map(str::parse::<u32>);
                Some((parts.next()?.ok()?, parts.next()?.ok()?))
            })
            .unwrap_or_else(|| panic!("{binary} --version printed {version:?}"));
        assert!(
            (major, minor) >= (1, 21),
            "{version}: transaction pooling with sqlx needs 1.21 or later (scripts/install-pgbouncer.sh)"
        );
        let mut command = Command::new(&binary);
        if is_root() {
            Command::new("chown").args(["-R", "postgres", &dir.display().to_string()]).status().unwrap();
            command.args(["-u", "postgres"]);
        }
        let child =
            command.arg(dir.join("pgbouncer.ini")).spawn().unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
        let bouncer = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not start; see {}/pgbouncer.log", bouncer.dir.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// Connect options of the PgBouncer database for `schema`.
    #[must_use]
    pub fn options(&self, direct: &PgConnectOptions, schema: &str) -> PgConnectOptions {
        direct.clone().host("127.0.0.1").port(self.port).database(schema)
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
