//! The control-plane database: users, adapter rows, stores, shares and snapshot policies, persisted as one JSON document at `database.sqlite.path`.
//!
//! Rows carry what the real GORM models carry; every mutation is written through (temp file + rename) so a
//! killed emulator loses nothing, and deleting the file is a database reset exactly as with the real SQLite file.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

mod shares;
pub use shares::{PolicyRow, ShareRow, StoreRow};

/// Default ports for adapters stored with port 0 (`models/adapter.go`).
pub fn default_port(adapter_type: &str) -> Option<u16> {
    match adapter_type {
        "nfs" => Some(12049),
        "smb" => Some(12445),
        _ => None,
    }
}

/// Rows seeded at every start when missing (`EnsureDefaultAdapters`): note SMB 1445, not 12445.
const SEEDED_ADAPTERS: &[(&str, u16)] = &[("nfs", 12049), ("smb", 1445)];

/// Groups created by `EnsureDefaultGroups`.
pub const DEFAULT_GROUPS: &[&str] = &["admins", "operators", "users"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    pub display_name: String,
    pub email: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<String>,
    pub enabled: bool,
    pub must_change_password: bool,
    pub created_at: Timestamp,
    pub last_login: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterRow {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    pub port: i64,
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Rows in insertion order: the real queries have no ORDER BY, so SQLite returns rowid order. The tables
/// added later default to empty, so a database file written before them still opens.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    users: Vec<User>,
    adapters: Vec<AdapterRow>,
    #[serde(default)]
    metadata_stores: Vec<StoreRow>,
    #[serde(default)]
    block_stores: Vec<StoreRow>,
    #[serde(default)]
    shares: Vec<ShareRow>,
    #[serde(default)]
    snapshot_policies: Vec<PolicyRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("control-plane database {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("control-plane database {path} is corrupt: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("user already exists")]
    DuplicateUser,
    #[error("adapter already exists")]
    DuplicateAdapter,
    #[error("store already exists")]
    DuplicateStore,
    #[error("share already exists")]
    DuplicateShare,
    #[error("password must be 8 to 72 bytes")]
    BadPassword,
}

/// The database handle; callers serialize access with a mutex.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    doc: Document,
}

impl Store {
    /// Opens (or creates) the database, then applies the start-up seeding of the real server.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io { path: path.into(), source };
        let doc = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path: path.into(), source })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Document::default(),
            Err(e) => return Err(io(e)),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut store = Store { path: path.into(), doc };
        let now = Timestamp::now();
        for (kind, port) in SEEDED_ADAPTERS {
            if store.adapter(kind).is_none() {
                store.doc.adapters.push(AdapterRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    kind: kind.to_string(),
                    enabled: true,
                    port: i64::from(*port),
                    config: None,
                    created_at: now,
                    updated_at: now,
                });
            }
        }
        store.flush()?;
        Ok(store)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let io = |source| StoreError::Io { path: self.path.clone(), source };
        let tmp = self.path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&self.doc).expect("the document always serializes");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    pub fn user(&self, username: &str) -> Option<&User> {
        self.doc.users.iter().find(|u| u.username == username)
    }

    /// Finds a user by name or by id, as `DELETE /users/{username-or-id}` does.
    pub fn user_by_name_or_id(&self, key: &str) -> Option<&User> {
        self.user(key).or_else(|| self.doc.users.iter().find(|u| u.id == key))
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.doc.users.iter()
    }

    fn uid_taken(&self, uid: Option<u32>, except: &str) -> bool {
        uid.is_some() && self.doc.users.iter().any(|u| u.uid == uid && u.username != except)
    }

    /// Inserts a user; duplicate username or uid is a conflict (unique indexes in the real schema).
    pub fn create_user(&mut self, mut user: User) -> Result<User, StoreError> {
        if self.user(&user.username).is_some() || self.uid_taken(user.uid, "") {
            return Err(StoreError::DuplicateUser);
        }
        user.groups = group_order(&user.groups);
        self.doc.users.push(user.clone());
        self.flush()?;
        Ok(user)
    }

    /// Applies `change` to a stored user and persists it; `None` if there is no such user. A uid another
    /// user holds is refused (the unique index), leaving the row as it was.
    pub fn update_user(&mut self, username: &str, change: impl FnOnce(&mut User)) -> Result<Option<User>, StoreError> {
        let Some(index) = self.doc.users.iter().position(|u| u.username == username) else { return Ok(None) };
        let mut user = self.doc.users[index].clone();
        change(&mut user);
        if self.uid_taken(user.uid, username) {
            return Err(StoreError::DuplicateUser);
        }
        user.groups = group_order(&user.groups);
        self.doc.users[index] = user.clone();
        self.flush()?;
        Ok(Some(user))
    }

    pub fn delete_user(&mut self, username: &str) -> Result<bool, StoreError> {
        let before = self.doc.users.len();
        self.doc.users.retain(|u| u.username != username);
        self.flush()?;
        Ok(self.doc.users.len() != before)
    }

    /// Adapter rows in insertion order (a re-created adapter comes last, as in SQLite).
    pub fn adapters(&self) -> impl Iterator<Item = &AdapterRow> {
        self.doc.adapters.iter()
    }

    pub fn adapter(&self, kind: &str) -> Option<&AdapterRow> {
        self.doc.adapters.iter().find(|a| a.kind == kind)
    }

    pub fn create_adapter(&mut self, row: AdapterRow) -> Result<AdapterRow, StoreError> {
        if self.adapter(&row.kind).is_some() {
            return Err(StoreError::DuplicateAdapter);
        }
        self.doc.adapters.push(row.clone());
        self.flush()?;
        Ok(row)
    }

    pub fn save_adapter(&mut self, row: AdapterRow) -> Result<(), StoreError> {
        match self.doc.adapters.iter_mut().find(|a| a.kind == row.kind) {
            Some(slot) => *slot = row,
            None => self.doc.adapters.push(row),
        }
        self.flush()
    }

    pub fn delete_adapter(&mut self, kind: &str) -> Result<bool, StoreError> {
        let before = self.doc.adapters.len();
        self.doc.adapters.retain(|a| a.kind != kind);
        self.flush()?;
        Ok(self.doc.adapters.len() != before)
    }
}

/// Group names as the real preload returns them: each once, in the groups table's creation order.
fn group_order(groups: &[String]) -> Vec<String> {
    DEFAULT_GROUPS.iter().filter(|g| groups.iter().any(|n| n == *g)).map(|g| g.to_string()).collect()
}

/// bcrypt with the real server's cost and its 8..=72-byte rule (`models.ValidatePassword`).
pub fn hash_password(password: &str) -> Result<String, StoreError> {
    if !(8..=72).contains(&password.len()) {
        return Err(StoreError::BadPassword);
    }
    bcrypt::hash(password, 10).map_err(|_| StoreError::BadPassword)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_defaults_once_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/controlplane.db");
        let mut store = Store::open(&path).unwrap();
        let ports: Vec<_> = store.adapters().map(|a| (a.kind.clone(), a.port)).collect();
        assert_eq!(ports, [("nfs".to_string(), 12049), ("smb".to_string(), 1445)]);
        let mut smb = store.adapter("smb").unwrap().clone();
        smb.enabled = false;
        smb.port = 21445;
        store.save_adapter(smb).unwrap();
        store.delete_adapter("nfs").unwrap();
        // A restart re-creates the deleted row (enabled) and keeps the edited one.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.adapter("smb").map(|a| (a.enabled, a.port)), Some((false, 21445)));
        assert_eq!(store.adapter("nfs").map(|a| (a.enabled, a.port)), Some((true, 12049)));
        // Rows come back in insertion order, as SQLite's rowid order: the re-seeded nfs is now last.
        assert_eq!(store.adapters().map(|a| a.kind.as_str()).collect::<Vec<_>>(), ["smb", "nfs"]);
    }

    #[test]
    fn groups_are_deduplicated_in_table_order_and_uids_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db")).unwrap();
        let user = |name: &str, uid| User {
            id: name.into(),
            username: name.into(),
            password_hash: String::new(),
            role: "user".into(),
            display_name: String::new(),
            email: String::new(),
            uid,
            gid: None,
            groups: vec!["users".into(), "admins".into(), "users".into()],
            enabled: true,
            must_change_password: false,
            created_at: Timestamp::now(),
            last_login: None,
        };
        assert_eq!(store.create_user(user("b", Some(7))).unwrap().groups, ["admins", "users"]);
        store.create_user(user("a", None)).unwrap();
        assert_eq!(store.users().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert!(matches!(store.create_user(user("c", Some(7))), Err(StoreError::DuplicateUser)));
        assert!(matches!(store.update_user("a", |u| u.uid = Some(7)), Err(StoreError::DuplicateUser)));
        assert_eq!(store.user("a").unwrap().uid, None, "a refused update changes nothing");
    }

    #[test]
    fn password_rules_match_the_server() {
        assert!(hash_password("short").is_err());
        assert!(hash_password(&"x".repeat(73)).is_err());
        let hash = hash_password("long-enough").unwrap();
        assert!(verify_password("long-enough", &hash));
        assert!(!verify_password("other-password", &hash));
    }
}
