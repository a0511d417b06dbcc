//! The tables behind shares: metadata and block stores, shares, and their snapshot policies — what a test
//! needs to create a share and give it a policy, with the real schema's unique names and cascades.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// A metadata or block store row: only what a share refers to (`models.MetadataStoreConfig`,
/// `models.BlockStoreConfig`; `kind` is empty for a metadata store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    #[serde(rename = "type")]
    pub store_type: String,
    pub created_at: Timestamp,
}

/// A share row (`models.Share`): the name with its leading slash and the stores it uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareRow {
    pub id: String,
    pub name: String,
    pub metadata_store_id: String,
    pub local_block_store_id: String,
    pub read_only: bool,
    pub default_permission: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A snapshot policy row (`models.SnapshotPolicy`): durations in nanoseconds, as the real column holds them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyRow {
    pub id: String,
    pub share_name: String,
    pub enabled: bool,
    pub interval_ns: i64,
    pub keep_last: i64,
    pub ttl_ns: i64,
    pub name_prefix: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Store {
    /// A metadata store (`kind` empty) or a block store of `kind`, by name or id.
    pub fn store(&self, kind: &str, key: &str) -> Option<&StoreRow> {
        let rows = if kind.is_empty() { &self.doc.metadata_stores } else { &self.doc.block_stores };
        rows.iter().find(|r| r.kind == kind && (r.name == key || r.id == key))
    }

    pub fn create_store(&mut self, row: StoreRow) -> Result<StoreRow, StoreError> {
        let rows = if row.kind.is_empty() { &mut self.doc.metadata_stores } else { &mut self.doc.block_stores };
        // The name is unique across kinds of block stores, as the real unique index on name is.
        if rows.iter().any(|r| r.name == row.name) {
            return Err(StoreError::DuplicateStore);
        }
        rows.push(row.clone());
        self.flush()?;
        Ok(row)
    }

    pub fn share(&self, name: &str) -> Option<&ShareRow> {
        self.doc.shares.iter().find(|s| s.name == name)
    }

    pub fn create_share(&mut self, row: ShareRow) -> Result<ShareRow, StoreError> {
        if self.share(&row.name).is_some() {
            return Err(StoreError::DuplicateShare);
        }
        self.doc.shares.push(row.clone());
        self.flush()?;
        Ok(row)
    }

    /// Deletes a share and, as the real foreign key does, its snapshot policy.
    pub fn delete_share(&mut self, name: &str) -> Result<bool, StoreError> {
        let before = self.doc.shares.len();
        self.doc.shares.retain(|s| s.name != name);
        self.doc.snapshot_policies.retain(|p| p.share_name != name);
        self.flush()?;
        Ok(self.doc.shares.len() != before)
    }

    pub fn policy(&self, share: &str) -> Option<&PolicyRow> {
        self.doc.snapshot_policies.iter().find(|p| p.share_name == share)
    }

    /// Policies ordered by share name (`ORDER BY share_name ASC`).
    pub fn policies(&self) -> Vec<&PolicyRow> {
        let mut rows: Vec<_> = self.doc.snapshot_policies.iter().collect();
        rows.sort_by(|a, b| a.share_name.cmp(&b.share_name));
        rows
    }

    /// Inserts, or on an existing share name overwrites the schedule and retention columns and `updated_at`
    /// only (the real `ON CONFLICT (share_name) DO UPDATE`); returns the stored row.
    pub fn upsert_policy(&mut self, row: PolicyRow) -> Result<PolicyRow, StoreError> {
        let stored = match self.doc.snapshot_policies.iter_mut().find(|p| p.share_name == row.share_name) {
            Some(slot) => {
                slot.enabled = row.enabled;
                slot.interval_ns = row.interval_ns;
                slot.keep_last = row.keep_last;
                slot.ttl_ns = row.ttl_ns;
                slot.name_prefix = row.name_prefix;
                slot.updated_at = row.updated_at;
                slot.clone()
            }
            None => {
                self.doc.snapshot_policies.push(row.clone());
                row
            }
        };
        self.flush()?;
        Ok(stored)
    }

    pub fn delete_policy(&mut self, share: &str) -> Result<bool, StoreError> {
        let before = self.doc.snapshot_policies.len();
        self.doc.snapshot_policies.retain(|p| p.share_name != share);
        self.flush()?;
        Ok(self.doc.snapshot_policies.len() != before)
    }
}
