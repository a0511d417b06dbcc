//! A real OpenLDAP server (Debian's slapd, unpacked by `scripts/testenv/slapd.sh`) on a loopback port, with a
//! throw-away database holding one organisation, one group and a test user: what the LDAP tests point DittoFS at.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::kube_env::wait_until;
use crate::process::{Watchdog, free_port, tail};

/// The directory's base DN.
pub const BASE_DN: &str = "dc=dittofs,dc=test";
/// The test user's DN (DittoFS binds as it).
pub const USER_DN: &str = "uid=alice,ou=people,dc=dittofs,dc=test";
/// The test user's password.
pub const USER_PASSWORD: &str = "alice-ldap-pw";

/// A running slapd; killed when dropped (and by the watchdog if the test process dies).
#[derive(Debug)]
pub struct Slapd {
    /// Its `ldap://127.0.0.1:<port>` URL.
    pub url: String,
    dir: tempfile::TempDir,
    child: Child,
    _watchdog: Watchdog,
}

/// The slapd root of the testenv cache; fails with how to get it.
fn root() -> anyhow::Result<PathBuf> {
    let script = crate::deploy::repo_root().join("scripts/testenv/slapd.sh");
    let out =
        Command::new(&script).arg("--print-root").output().with_context(|| format!("run {}", script.display()))?;
    let root = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    anyhow::ensure!(
        root.join("usr/sbin/slapd").is_file(),
        "slapd not found under {}: run scripts/testenv/slapd.sh (or `make testenv`) once",
        root.display()
    );
    Ok(root)
}

impl Slapd {
    /// Creates the database (slapadd, offline) and starts slapd on a free loopback port.
    pub async fn start() -> anyhow::Result<Slapd> {
        let root = root()?;
        let dir = tempfile::tempdir()?;
        let schema = root.join("etc/ldap/schema");
        let conf = format!(
            "include {s}/core.schema\ninclude {s}/cosine.schema\ninclude {s}/nis.schema\ninclude {s}/inetorgperson.schema\n\
             modulepath {modules}\nmoduleload back_mdb\npidfile {d}/slapd.pid\n\
             database mdb\nsuffix \"{BASE_DN}\"\nrootdn \"cn=admin,{BASE_DN}\"\nrootpw admin-ldap-pw\n\
             directory {d}/data\nmaxsize 10485760\n",
            s = schema.display(),
            modules = root.join("usr/lib/ldap").display(),
            d = dir.path().display(),
        );
        std::fs::create_dir_all(dir.path().join("data"))?;
        std::fs::write(dir.path().join("slapd.conf"), conf)?;
        let ldif = format!(
            "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: dittofs\no: DittoFS tests\n\n\
             dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{BASE_DN}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {USER_DN}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: alice\ncn: Alice\nsn: Test\n\
             uidNumber: 20001\ngidNumber: 20001\nhomeDirectory: /home/alice\nuserPassword: {USER_PASSWORD}\n\n\
             dn: cn=staff,ou=groups,{BASE_DN}\nobjectClass: posixGroup\ncn: staff\ngidNumber: 20001\nmemberUid: alice\n"
        );
        std::fs::write(dir.path().join("init.ldif"), ldif)?;
        let slapd = root.join("usr/sbin/slapd");
        let libs = root.join("usr/lib/x86_64-linux-gnu");
        let conf_path = dir.path().join("slapd.conf");
        let added = Command::new(&slapd)
            .env("LD_LIBRARY_PATH", &libs)
            .args(["-T", "add", "-f"])
            .arg(&conf_path)
            .arg("-l")
            .arg(dir.path().join("init.ldif"))
            .output()
            .context("slapadd")?;
        anyhow::ensure!(added.status.success(), "slapadd failed: {}", String::from_utf8_lossy(&added.stderr));

        let port = free_port()?;
        let url = format!("ldap://127.0.0.1:{port}");
        let log = dir.path().join("slapd.log");
        let out = std::fs::File::create(&log)?;
        let mut watchdog = Watchdog::spawn(dir.path())?;
        // `-d` keeps it in the foreground (its stats go to the log); killed with the test either way.
        let child = Command::new(&slapd)
            .env("LD_LIBRARY_PATH", &libs)
            .args(["-d", "256", "-f"])
            .arg(&conf_path)
            .args(["-h", &format!("{url}/")])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawn slapd")?;
        watchdog.adopt(child.id())?;
        let mut slapd = Slapd { url, dir, child, _watchdog: watchdog };
        let addr = format!("127.0.0.1:{port}");
        let started = wait_until("slapd to listen", Duration::from_secs(15), async || {
            if let Ok(Some(status)) = slapd.child.try_wait() {
                anyhow::bail!("slapd exited ({status})");
            }
            tokio::net::TcpStream::connect(&addr).await?;
            Ok(())
        })
        .await;
        if let Err(e) = started {
            anyhow::bail!("{e}\n{}", tail(&log, 30));
        }
        Ok(slapd)
    }

    /// The end of slapd's log (for a failure report).
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("slapd.log"), 30)
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
