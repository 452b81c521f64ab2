//! A box: its data directory, identity, keys, chunk store and metadata.
//!
//! ```text
//! DATA/box.json     public configuration (name, nodeId, public key, KDF parameters, key check)
//! DATA/lock         advisory lock
//! DATA/store/       chunk store: packs/, chunks-<gen>.run, index.state, index.log (docs/STORE.md)
//! DATA/objects.log encrypted metadata objects (docs/METADATA.md)
//! DATA/objects.idx  the object log's index checkpoint, once the log is large
//! DATA/meta.redb    the buddies' state, once the box has buddies
//! ```

pub mod access;
pub mod hostname;
pub mod keys;
pub mod lock;
pub mod password;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pastiche_core::{Identity, NodeId};
use serde::{Deserialize, Serialize};

use crate::exit::{ExitError, NO_BOX, WRONG_PASSPHRASE};
use crate::meta::db::MetaDb;
use crate::meta::model::{decode, encode, Chunks, RootObject, Tree};
use crate::meta::object::{open_object, seal_object, ObjectKey, ObjectName, ObjectRef, ROOT_SEQ};
use crate::meta::tree::{ContentKeys, Kind};
use crate::store::group::GroupKey;
use crate::store::ChunkStore;
pub use access::SharedBox;
use keys::{KdfParams, RootKey};
pub use lock::LockMode;

/// The box's public configuration file in its data directory.
pub const CONFIG_FILE: &str = "box.json";
/// Version 4: metadata is content-addressed trees in an object log
/// (docs/METADATA.md). Version 3 boxes, the same trees in `meta.redb`, are
/// migrated when opened. Version 2 (per-entry version logs) and version 1
/// (raw SPEC §2 chunks) boxes are refused, not migrated: there were no
/// deployed users (docs/STORE.md, "Versions").
const FORMAT_VERSION: u32 = 4;
/// The format whose objects were in `meta.redb`.
const FORMAT_REDB_OBJECTS: u32 = 3;

/// A content-addressed metadata object before it is sealed: naming it is
/// cheap, sealing (compressing, encrypting) is not, and an object the box
/// already holds need not be sealed again.
pub struct PlainObject {
    /// Its name, from the plaintext.
    pub name: ObjectName,
    /// The encoded tree or list.
    pub plain: Vec<u8>,
}

/// The public configuration of a box (`box.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoxConfig {
    /// Format version.
    pub version: u32,
    /// Fully-qualified machine name.
    pub name: String,
    /// Overlay nodeId (hex), from the name.
    pub node_id: String,
    /// Ed25519 public key (hex).
    pub public_key: String,
    /// Argon2id parameters of the root key.
    pub kdf: KdfParams,
    /// Tells a right passphrase from a wrong one.
    pub key_check: String,
}

/// Where boxes live when no `--data` or `PASTICHE_DATA` is given:
/// `$XDG_DATA_HOME/pastiche`, else `~/.local/share/pastiche`, else
/// `/var/lib/pastiche`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("pastiche");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".local/share/pastiche");
    }
    PathBuf::from("/var/lib/pastiche")
}

/// An open box.
pub struct Repo {
    /// The data directory.
    pub dir: PathBuf,
    /// Public configuration.
    pub config: BoxConfig,
    /// The overlay nodeId.
    pub node: NodeId,
    /// The signing identity.
    pub identity: Identity,
    /// Sealed chunks.
    pub store: ChunkStore,
    /// Metadata objects.
    pub meta: MetaDb,
    /// Keys of the content-addressed metadata objects.
    content: ContentKeys,
    root_key: RootKey,
    _lock: File,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo").field("dir", &self.dir).field("name", &self.config.name).finish_non_exhaustive()
    }
}

impl Repo {
    /// Creates a box in `dir` for the machine `name`.
    pub fn init(dir: &Path, name: &str, passphrase: &str, kdf: KdfParams) -> Result<Repo> {
        if dir.join(CONFIG_FILE).exists() {
            bail!("a box already exists in {}", dir.display());
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = lock::acquire(dir, LockMode::Exclusive)?;
        let root_key = RootKey::derive(passphrase.as_bytes(), name, kdf)?;
        let identity = root_key.identity()?;
        let seed = identity.seed();
        let node = NodeId::from_name(name);
        let config = BoxConfig {
            version: FORMAT_VERSION,
            name: name.to_string(),
            node_id: node.to_string(),
            public_key: identity.public_key().to_string(),
            kdf,
            key_check: root_key.check_value(),
        };
        let store = ChunkStore::open(dir.join("store")).context("cannot create the chunk store")?;
        let meta = MetaDb::create(dir)?;
        let content = content_keys(&root_key);
        keep_own_chunks(&store, &identity);
        let repo = Repo { dir: dir.to_path_buf(), config, node, identity, store, meta, content, root_key, _lock: lock };
        let root =
            RootObject { name: name.to_string(), identity_seed: seed, next_snapshot_seq: 1, snapshots: Vec::new() };
        repo.write_metadata(&[], &[], &root, None)?;
        // The config goes last: a box without it is not a box, so a crash
        // during init leaves nothing half-made that `open` would accept.
        repo.write_config()?;
        Ok(repo)
    }

    /// Opens the box in `dir`, checking the passphrase.
    pub fn open(dir: &Path, passphrase: &str, mode: LockMode) -> Result<Repo> {
        let config_path = dir.join(CONFIG_FILE);
        let text = match fs::read_to_string(&config_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(
                    ExitError::new(NO_BOX, format!("no box in {} (run `pastiche init` first)", dir.display())).into()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", config_path.display())),
        };
        let mut config: BoxConfig =
            serde_json::from_str(&text).with_context(|| format!("{} is damaged", config_path.display()))?;
        if config.version != FORMAT_VERSION && config.version != FORMAT_REDB_OBJECTS {
            bail!(
                "box format version {} is not supported (this pastiche reads {FORMAT_VERSION}, content-addressed \
                 metadata trees, and migrates {FORMAT_REDB_OBJECTS}; version 2 boxes keep per-entry version logs and version 1 boxes hold chunks sealed \
                 before compression: they cannot be migrated, back up into a new box)",
                config.version
            );
        }
        let lock = lock::acquire(dir, mode)?;
        let root_key = RootKey::derive(passphrase.as_bytes(), &config.name, config.kdf)?;
        if root_key.check_value() != config.key_check {
            return Err(ExitError::new(WRONG_PASSPHRASE, "wrong passphrase for this box").into());
        }
        let node = NodeId::from_name(&config.name);
        let store = ChunkStore::open(dir.join("store")).context("cannot open the chunk store")?;
        if config.version == FORMAT_REDB_OBJECTS {
            MetaDb::migrate_format_3(dir)?;
        }
        let meta = MetaDb::open(dir)?;
        let (root, _) = load_root(&meta, &root_ref(&node, &root_key))?;
        let identity = Identity::from_seed(root.identity_seed)
            .map_err(|e| anyhow::anyhow!("the root object's identity is unusable ({e}): the box is damaged"))?;
        if identity.public_key().to_string() != config.public_key {
            bail!("the root object's identity does not match box.json: the box is damaged");
        }
        let content = content_keys(&root_key);
        keep_own_chunks(&store, &identity);
        let migrated = config.version != FORMAT_VERSION;
        config.version = FORMAT_VERSION;
        let repo = Repo { dir: dir.to_path_buf(), identity, config, node, store, meta, content, root_key, _lock: lock };
        if migrated {
            repo.write_config()?;
        }
        Ok(repo)
    }

    /// The key of the root record the buddies keep for disaster recovery
    /// (docs/METADATA.md, "The root on the buddies").
    pub fn root_record_key(&self) -> ObjectKey {
        ObjectKey(self.root_key.subkey(keys::ROOT_RECORD_LABEL))
    }

    /// Creates a box in the blank directory `dir` from a root object
    /// recovered from its buddies (`pastiche recover`): the same name,
    /// identity and snapshots, an empty chunk store, and only the root
    /// object in its metadata (the caller fetches the rest). The root must
    /// open with the passphrase and carry the identity the passphrase derives.
    pub fn create_recovered(
        dir: &Path,
        name: &str,
        passphrase: &str,
        kdf: KdfParams,
        sealed_root: &[u8],
    ) -> Result<Repo> {
        if dir.join(CONFIG_FILE).exists() {
            bail!("a box already exists in {}: recover into an empty data directory", dir.display());
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = lock::acquire(dir, LockMode::Exclusive)?;
        let root_key = RootKey::derive(passphrase.as_bytes(), name, kdf)?;
        let identity = root_key.identity()?;
        let node = NodeId::from_name(name);
        let r = root_ref(&node, &root_key);
        let (_, _, plain) = open_object(&r.key, sealed_root).context("the recovered root object does not open")?;
        let root: RootObject = decode(&plain, "recovered root object").context(
            "the recovered root object is not of box format 3 (content-addressed metadata trees): boxes of format 2 \
             cannot be recovered by this pastiche",
        )?;
        if root.name != name {
            bail!("the recovered root object is for {:?}, not {name:?}", root.name);
        }
        if root.identity_seed != identity.seed() {
            bail!("the recovered root object carries another identity than this passphrase and name derive");
        }
        let config = BoxConfig {
            version: FORMAT_VERSION,
            name: name.to_string(),
            node_id: node.to_string(),
            public_key: identity.public_key().to_string(),
            kdf,
            key_check: root_key.check_value(),
        };
        let store = ChunkStore::open(dir.join("store")).context("cannot create the chunk store")?;
        // A recovery cut short leaves metadata but no box.json: creating
        // starts it over.
        let meta = MetaDb::create(dir)?;
        meta.apply(&[(r.name, sealed_root.to_vec())], &[])?;
        let content = content_keys(&root_key);
        keep_own_chunks(&store, &identity);
        Ok(Repo { dir: dir.to_path_buf(), config, node, identity, store, meta, content, root_key, _lock: lock })
    }

    /// Writes `box.json`, which makes the directory a box: the last step of
    /// a recovery, once its metadata is whole.
    pub fn write_config(&self) -> Result<()> {
        write_atomically(&self.dir.join(CONFIG_FILE), serde_json::to_string_pretty(&self.config)?.as_bytes())
    }

    /// Where the root object is and its passphrase-derived key.
    pub fn root_ref(&self) -> ObjectRef {
        root_ref(&self.node, &self.root_key)
    }

    /// Reads and decrypts the root object.
    pub fn load_root(&self) -> Result<RootObject> {
        Ok(self.load_root_versioned()?.0)
    }

    /// Reads and decrypts the root object, with the version a later
    /// [`Repo::commit_metadata`] must still find.
    pub fn load_root_versioned(&self) -> Result<(RootObject, RootVersion)> {
        load_root(&self.meta, &self.root_ref())
    }

    /// A directory tree as a content-addressed object, named but not sealed.
    pub fn tree_object(&self, tree: &Tree) -> PlainObject {
        self.plain_object(Kind::Tree, encode(tree))
    }

    /// A file's handle list as a content-addressed object, named but not sealed.
    pub fn list_object(&self, handles: &[[u8; 20]]) -> PlainObject {
        self.plain_object(Kind::List, encode(&handles))
    }

    fn plain_object(&self, kind: Kind, plain: Vec<u8>) -> PlainObject {
        PlainObject { name: self.content.name_of(kind, &plain), plain }
    }

    /// The sealed bytes of `object` (the same every time).
    pub fn seal_object(&self, object: &PlainObject) -> Vec<u8> {
        self.content.seal_named(&self.node, &object.name, &object.plain)
    }

    /// Reads, checks and decodes the tree `name`.
    pub fn load_tree(&self, name: &ObjectName) -> Result<Tree> {
        decode(&self.open_content(Kind::Tree, name)?, "metadata tree")
    }

    /// The handles of a file, reading its list object if it has one.
    pub fn load_handles(&self, chunks: &Chunks) -> Result<Vec<[u8; 20]>> {
        match chunks {
            Chunks::Inline(handles) => Ok(handles.clone()),
            Chunks::List { list, count } => {
                let handles: Vec<[u8; 20]> = decode(&self.open_content(Kind::List, list)?, "handle list")?;
                if handles.len() as u64 != *count {
                    bail!("handle list {list} holds {} handles, its file says {count}", handles.len());
                }
                Ok(handles)
            }
        }
    }

    /// The plaintext of a content-addressed object read from `bytes`, which
    /// were stored (or fetched) as `name`.
    pub fn open_content_bytes(&self, kind: Kind, name: &ObjectName, bytes: &[u8]) -> Result<Vec<u8>> {
        self.content.open(kind, name, bytes).with_context(|| format!("metadata object {name}"))
    }

    fn open_content(&self, kind: Kind, name: &ObjectName) -> Result<Vec<u8>> {
        let bytes = self.meta.get(name)?.with_context(|| format!("metadata object {name} is missing"))?;
        self.open_content_bytes(kind, name, &bytes)
    }

    /// Atomically writes objects, deletes others and replaces the root
    /// object: the commit point of every change to snapshots. It is a
    /// compare-and-swap: if the root object is no longer the one `read`
    /// names (another writer committed since it was loaded), nothing is
    /// written and the error is a [`Conflict`](crate::meta::db::Conflict).
    pub fn commit_metadata(
        &self,
        puts: &[(ObjectName, Vec<u8>)],
        deletes: &[ObjectName],
        root: &RootObject,
        read: RootVersion,
    ) -> Result<()> {
        self.write_metadata(puts, deletes, root, Some(read))
    }

    fn write_metadata(
        &self,
        puts: &[(ObjectName, Vec<u8>)],
        deletes: &[ObjectName],
        root: &RootObject,
        read: Option<RootVersion>,
    ) -> Result<()> {
        let r = self.root_ref();
        let mut all = puts.to_vec();
        all.push((r.name, seal_object(&r.key, &self.node, ROOT_SEQ, &encode(root))));
        self.meta.apply_if(&all, deletes, read.map(|v| (r.name, v.0)))
    }
}

/// Which root object a change was prepared from (the digest of its sealed
/// bytes), for the compare-and-swap of [`Repo::commit_metadata`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootVersion([u8; 20]);

fn content_keys(root_key: &RootKey) -> ContentKeys {
    ContentKeys::new(root_key.subkey("tree-name"), root_key.subkey("tree-key"))
}

fn root_ref(node: &NodeId, root_key: &RootKey) -> ObjectRef {
    ObjectRef { name: ObjectName::root(node), seq: ROOT_SEQ, key: ObjectKey(root_key.subkey("root-object")) }
}

/// Gives the store the box's group key, so grouped chunks can be read, and
/// keeps new chunks in compressed groups ([`crate::store::group`], about
/// 10% less disk than sealing each alone) unless `PASTICHE_GROUP_CHUNKS=off`
/// (every new chunk sealed alone, as before groups; what is grouped stays
/// readable either way).
fn keep_own_chunks(store: &ChunkStore, identity: &Identity) {
    store.set_group_key(GroupKey::derive(&identity.seed()));
    store.set_grouping(std::env::var("PASTICHE_GROUP_CHUNKS").map_or(true, |v| v != "off"));
}

fn load_root(meta: &MetaDb, r: &ObjectRef) -> Result<(RootObject, RootVersion)> {
    let bytes = meta.get(&r.name)?.context("the root object is missing: the box is damaged")?;
    let (_, _, plain) = open_object(&r.key, &bytes).context("cannot open the root object")?;
    Ok((decode(&plain, "root object")?, RootVersion(crate::meta::db::digest(&bytes))))
}

/// Writes `path` so that it is either the old or the new content after a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_of_older_formats_are_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let kdf = KdfParams { memory_kib: 256, iterations: 1, parallelism: 1 };
        drop(Repo::init(dir.path(), "nas.example", "pw", kdf).unwrap());
        assert!(Repo::open(dir.path(), "pw", LockMode::Exclusive).is_ok());
        let path = dir.path().join(CONFIG_FILE);
        let mut config: BoxConfig = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        for old in [1, 2] {
            config.version = old;
            fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
            let Err(err) = Repo::open(dir.path(), "pw", LockMode::Exclusive) else {
                panic!("version {old} is refused")
            };
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("version {old} is not supported")) && msg.contains("cannot be migrated"),
                "{msg}"
            );
            assert!(msg.contains("content-addressed metadata trees"), "names the format it reads: {msg}");
        }
    }

    /// A box of format 3 (objects in `meta.redb`) opens with every snapshot,
    /// its objects moved to the log and `box.json` raised to format 4.
    #[test]
    fn a_format_3_box_is_migrated_when_opened() {
        use redb::{Database, TableDefinition};
        const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
        let dir = tempfile::tempdir().unwrap();
        let kdf = KdfParams { memory_kib: 256, iterations: 1, parallelism: 1 };
        let (root, names) = {
            let repo = Repo::init(dir.path(), "nas.example", "pw", kdf).unwrap();
            let tree = Tree::default();
            let (name, sealed) = repo.content.seal(&repo.node, Kind::Tree, &encode(&tree));
            repo.meta.apply(&[(name, sealed)], &[]).unwrap();
            (repo.load_root().unwrap(), repo.meta.names().unwrap())
        };
        // Rebuild it as format 3 wrote it.
        {
            let log = crate::meta::log::ObjectLog::open(&dir.path().join("objects.log")).unwrap();
            let db = Database::create(dir.path().join("meta.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(OBJECTS).unwrap();
                for n in &names {
                    table.insert(&n.0[..], &log.get(n).unwrap().unwrap()[..]).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        fs::remove_file(dir.path().join("objects.log")).unwrap();
        let path = dir.path().join(CONFIG_FILE);
        let mut config: BoxConfig = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        config.version = 3;
        fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();

        let repo = Repo::open(dir.path(), "pw", LockMode::Shared).unwrap();
        assert_eq!(repo.load_root().unwrap().next_snapshot_seq, root.next_snapshot_seq);
        let mut moved = repo.meta.names().unwrap();
        moved.sort();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(moved, expected);
        drop(repo);
        let config: BoxConfig = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(config.version, 4);
        assert!(Repo::open(dir.path(), "pw", LockMode::Exclusive).is_ok());
    }
}
