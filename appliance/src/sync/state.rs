//! What has been shipped to each buddy, kept in the box's metadata database
//! so every sync ships only what changed.

use anyhow::Result;
use pastiche_core::{ChunkId, PublicKey};
use redb::{Database, TableDefinition};

/// (buddy key || chunkId) for every chunk a buddy holds for us.
const SHIPPED_CHUNKS: TableDefinition<&[u8], ()> = TableDefinition::new("sync_chunks");
/// (buddy key || object name) -> SHA-1 of the sealed object last shipped ||
/// the number of parts it was shipped in (2 bytes, big-endian; absent in
/// entries written before objects were deleted on buddies: one part).
const SHIPPED_OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sync_objects");

fn key(buddy: &PublicKey, id: &[u8; 20]) -> [u8; 52] {
    let mut k = [0u8; 52];
    k[..32].copy_from_slice(&buddy.0);
    k[32..].copy_from_slice(id);
    k
}

/// Calls `f` with the 20-byte id and the value of every entry of `buddy` in
/// a table keyed (buddy key || id).
fn scan<V: redb::Value + 'static>(
    db: &Database,
    def: TableDefinition<&[u8], V>,
    buddy: &PublicKey,
    mut f: impl FnMut([u8; 20], V::SelfType<'_>),
) -> Result<()> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for item in table.range(&buddy.0[..]..)? {
        let (k, v) = item?;
        let k = k.value();
        if k.len() != 52 || k[..32] != buddy.0 {
            break;
        }
        f(k[32..].try_into().expect("20 bytes"), v.value());
    }
    Ok(())
}

/// The chunks a buddy holds for us, as recorded.
pub fn shipped_chunks(db: &Database, buddy: &PublicKey) -> Result<std::collections::HashSet<ChunkId>> {
    let mut out = std::collections::HashSet::new();
    scan(db, SHIPPED_CHUNKS, buddy, |id, ()| {
        out.insert(ChunkId(id));
    })?;
    Ok(out)
}

/// An object as last shipped to a buddy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShippedObject {
    /// SHA-1 of the sealed object.
    pub digest: [u8; 20],
    /// The parts it was shipped in ([`super::split`]): deleting it there
    /// deletes each of them.
    pub parts: u16,
}

impl ShippedObject {
    fn to_val(self) -> [u8; 22] {
        let mut v = [0u8; 22];
        v[..20].copy_from_slice(&self.digest);
        v[20..].copy_from_slice(&self.parts.to_be_bytes());
        v
    }

    fn from_val(v: &[u8]) -> Option<Self> {
        let digest = v.get(..20)?.try_into().ok()?;
        let parts = match v.get(20..) {
            Some([hi, lo]) => u16::from_be_bytes([*hi, *lo]),
            _ => 1,
        };
        Some(ShippedObject { digest, parts })
    }
}

/// Each object last shipped to a buddy, by name.
pub fn shipped_objects(db: &Database, buddy: &PublicKey) -> Result<std::collections::HashMap<[u8; 20], ShippedObject>> {
    let mut out = std::collections::HashMap::new();
    scan(db, SHIPPED_OBJECTS, buddy, |name, v: &[u8]| {
        if let Some(o) = ShippedObject::from_val(v) {
            out.insert(name, o);
        }
    })?;
    Ok(out)
}

/// Records chunks the buddy has made durable for us.
pub fn add_chunks(db: &Database, buddy: &PublicKey, ids: &[ChunkId]) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(SHIPPED_CHUNKS)?;
        for id in ids {
            t.insert(&key(buddy, &id.0)[..], ())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// After a commit: objects shipped, objects deleted there, chunk references
/// released.
pub fn record_commit(
    db: &Database,
    buddy: &PublicKey,
    objects: &[([u8; 20], ShippedObject)],
    deleted_objects: &[[u8; 20]],
    released: &[ChunkId],
) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(SHIPPED_OBJECTS)?;
        for name in deleted_objects {
            t.remove(&key(buddy, name)[..])?;
        }
        for (name, shipped) in objects {
            t.insert(&key(buddy, name)[..], &shipped.to_val()[..])?;
        }
        let mut c = txn.open_table(SHIPPED_CHUNKS)?;
        for id in released {
            c.remove(&key(buddy, &id.0)[..])?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Forgets everything recorded for a buddy (it was removed or wiped).
pub fn forget_buddy(db: &Database, buddy: &PublicKey) -> Result<()> {
    let txn = db.begin_write()?;
    forget_buddy_in(&txn, buddy)?;
    txn.commit()?;
    Ok(())
}

/// [`forget_buddy`] inside `txn`, so that it goes with what the caller
/// writes there (a drop notice acted on).
pub fn forget_buddy_in(txn: &redb::WriteTransaction, buddy: &PublicKey) -> Result<()> {
    forget_in(&mut txn.open_table(SHIPPED_CHUNKS)?, buddy)?;
    forget_in(&mut txn.open_table(SHIPPED_OBJECTS)?, buddy)
}

/// Removes every entry of `buddy` from a table keyed (buddy key || id).
fn forget_in<V: redb::Value + 'static>(table: &mut redb::Table<&[u8], V>, buddy: &PublicKey) -> Result<()> {
    use redb::ReadableTable;
    let mut keys = Vec::new();
    for item in table.range(&buddy.0[..]..)? {
        let (k, _) = item?;
        let k = k.value();
        if k.len() != 52 || k[..32] != buddy.0 {
            break;
        }
        keys.push(k.to_vec());
    }
    for k in keys {
        table.remove(&k[..])?;
    }
    Ok(())
}
