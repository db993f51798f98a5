//! The databases a node has attached: names, ids, kinds, files and the TDB flags
//! they were opened with (reference ctdb-protocol-samba.md §2.1–2.5). Pure: the
//! daemon opens the files this decides on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::hash::db_id;
use super::tdb::flags as tdb_flags;
use crate::protocol::dbctl::db_flags;

/// What kind of database, as `GET_DBMAP` and the attach controls tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// Records live on the node that last wanted them (share modes, locks).
    Volatile,
    /// Every node holds every record; changed only in transactions.
    Persistent,
    /// Volatile on disk, recovered like persistent (not used by Samba 4.17).
    Replicated,
}

impl DbKind {
    /// The `GET_DBMAP` flag bits of this kind (§2.4).
    pub fn map_flags(self) -> u8 {
        match self {
            DbKind::Volatile => 0,
            DbKind::Persistent => db_flags::PERSISTENT,
            DbKind::Replicated => db_flags::REPLICATED,
        }
    }
}

/// One attached database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbInfo {
    /// lookup3 of the name with its NUL.
    pub id: u32,
    /// The base name clients attach by, e.g. `locking.tdb`.
    pub name: String,
    /// Its kind.
    pub kind: DbKind,
    /// The local file: `<directory>/<name>.<pnn>`.
    pub path: PathBuf,
    /// The TDB flags the daemon opens (and smbd must open) the file with.
    pub open_flags: u32,
    /// `SET_DB_READONLY` was asked for.
    pub readonly: bool,
    /// `SET_DB_STICKY` was asked for.
    pub sticky: bool,
}

impl DbInfo {
    /// The `GET_DBMAP` flags byte.
    pub fn map_flags(&self) -> u8 {
        let mut flags = self.kind.map_flags();
        if self.readonly {
            flags |= db_flags::READONLY;
        }
        if self.sticky {
            flags |= db_flags::STICKY;
        }
        flags
    }
}

/// Why an attach was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AttachError {
    /// Empty, too long, or a name that is not a plain file name.
    #[error("database name {0:?} is not a plain file name")]
    BadName(String),
    /// Two names with one hash: CTDB refuses the second.
    #[error("database {name:?} has the id {id:#010x} of the attached database {other:?}")]
    IdCollision {
        /// The new name.
        name: String,
        /// The shared id.
        id: u32,
        /// The name already attached.
        other: String,
    },
    /// A persistent (or replicated) attach of a name attached as another kind.
    #[error("database {name:?} is attached as {existing:?}, not {wanted:?}")]
    KindMismatch {
        /// The name.
        name: String,
        /// How it is attached.
        existing: DbKind,
        /// What was asked.
        wanted: DbKind,
    },
}

/// The outcome of an accepted attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attached {
    /// The name was attached already: same id.
    Existing(u32),
    /// A new database: open its file, then [`Registry::insert`] it.
    New(DbInfo),
}

/// Where database files go and how they are opened (`ctdb.conf [database]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbDirs {
    /// Volatile and replicated databases.
    pub volatile: PathBuf,
    /// Persistent databases.
    pub persistent: PathBuf,
    /// `tdb mutexes` is on and the system has robust mutexes.
    pub mutexes: bool,
}

/// The attached databases of one node.
#[derive(Debug, Clone)]
pub struct Registry {
    pnn: u32,
    dirs: DbDirs,
    dbs: BTreeMap<u32, DbInfo>,
}

/// Longest database name accepted (a file name, less room for `.<pnn>`).
const MAX_NAME_LEN: usize = 240;

impl Registry {
    /// An empty registry for node `pnn`.
    pub fn new(pnn: u32, dirs: DbDirs) -> Self {
        Self {
            pnn,
            dirs,
            dbs: BTreeMap::new(),
        }
    }

    /// Where database files go.
    pub fn dirs(&self) -> &DbDirs {
        &self.dirs
    }

    /// The TDB flags a database of `kind` is opened with (§2.5).
    pub fn open_flags(&self, kind: DbKind) -> u32 {
        use tdb_flags::*;
        match kind {
            DbKind::Volatile => {
                let base = NOSYNC | CLEAR_IF_FIRST | INCOMPATIBLE_HASH | DISALLOW_NESTING;
                if self.dirs.mutexes {
                    base | MUTEX_LOCKING
                } else {
                    base
                }
            }
            DbKind::Replicated => NOSYNC | CLEAR_IF_FIRST | INCOMPATIBLE_HASH | DISALLOW_NESTING,
            DbKind::Persistent => DISALLOW_NESTING,
        }
    }

    /// Decides an attach of `name` as `kind`. A plain (volatile) attach of a name
    /// attached as any kind gets that database, as in CTDB; the other way round is
    /// refused.
    pub fn attach(&self, name: &str, kind: DbKind) -> Result<Attached, AttachError> {
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || name.contains('/')
            || name == "."
            || name == ".."
            || name.contains('\0')
        {
            return Err(AttachError::BadName(name.to_owned()));
        }
        let id = db_id(name);
        if let Some(existing) = self.dbs.get(&id) {
            if existing.name != name {
                return Err(AttachError::IdCollision {
                    name: name.to_owned(),
                    id,
                    other: existing.name.clone(),
                });
            }
            if kind != DbKind::Volatile && existing.kind != kind {
                return Err(AttachError::KindMismatch {
                    name: name.to_owned(),
                    existing: existing.kind,
                    wanted: kind,
                });
            }
            return Ok(Attached::Existing(id));
        }
        let dir: &Path = match kind {
            DbKind::Persistent => &self.dirs.persistent,
            DbKind::Volatile | DbKind::Replicated => &self.dirs.volatile,
        };
        Ok(Attached::New(DbInfo {
            id,
            name: name.to_owned(),
            kind,
            path: dir.join(format!("{name}.{}", self.pnn)),
            open_flags: self.open_flags(kind),
            readonly: false,
            sticky: false,
        }))
    }

    /// Records a database whose file is open.
    pub fn insert(&mut self, info: DbInfo) {
        self.dbs.insert(info.id, info);
    }

    /// Forgets a detached database; its info, if it was attached.
    pub fn remove(&mut self, id: u32) -> Option<DbInfo> {
        self.dbs.remove(&id)
    }

    /// The database with id `id`.
    pub fn get(&self, id: u32) -> Option<&DbInfo> {
        self.dbs.get(&id)
    }

    /// The database with id `id`, to change its flags.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut DbInfo> {
        self.dbs.get_mut(&id)
    }

    /// Every attached database, by id.
    pub fn iter(&self) -> impl Iterator<Item = &DbInfo> {
        self.dbs.values()
    }

    /// How many are attached.
    pub fn len(&self) -> usize {
        self.dbs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// Persistent databases this node had before it started: files named
    /// `<name>.<pnn>` in the persistent directory (`file_names` = that
    /// directory's entries). CTDB attaches them at start, before any client.
    pub fn persistent_leftovers<'a>(
        &self,
        file_names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let suffix = format!(".{}", self.pnn);
        let mut names: Vec<String> = file_names
            .into_iter()
            .filter_map(|f| f.strip_suffix(&suffix))
            .filter(|name| name.ends_with(".tdb"))
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(mutexes: bool) -> Registry {
        Registry::new(
            2,
            DbDirs {
                volatile: "/var/lib/ctdb/volatile".into(),
                persistent: "/var/lib/ctdb/persistent".into(),
                mutexes,
            },
        )
    }

    #[test]
    fn a_new_volatile_database_gets_its_hash_path_and_flags() {
        let r = registry(true);
        let Attached::New(info) = r.attach("locking.tdb", DbKind::Volatile).unwrap() else {
            panic!("not new")
        };
        assert_eq!(info.id, 0x7a19_d84d);
        assert_eq!(
            info.path,
            PathBuf::from("/var/lib/ctdb/volatile/locking.tdb.2")
        );
        // NOSYNC + CLEAR_IF_FIRST + INCOMPATIBLE_HASH + DISALLOW_NESTING + MUTEX.
        assert_eq!(info.open_flags, 0x1C41);
        assert_eq!(registry(false).open_flags(DbKind::Volatile), 0x0C41);
        assert_eq!(r.open_flags(DbKind::Persistent), 0x0400);
    }

    #[test]
    fn a_persistent_database_lives_in_the_persistent_directory() {
        let r = registry(true);
        let Attached::New(info) = r.attach("secrets.tdb", DbKind::Persistent).unwrap() else {
            panic!("not new")
        };
        assert_eq!(info.id, 0x7132_c184);
        assert_eq!(
            info.path,
            PathBuf::from("/var/lib/ctdb/persistent/secrets.tdb.2")
        );
        assert_eq!(info.map_flags(), 0x01);
    }

    #[test]
    fn attaching_again_gives_the_same_id_and_kinds_must_agree() {
        let mut r = registry(true);
        let Attached::New(info) = r.attach("secrets.tdb", DbKind::Persistent).unwrap() else {
            panic!()
        };
        r.insert(info);
        assert_eq!(
            r.attach("secrets.tdb", DbKind::Persistent),
            Ok(Attached::Existing(0x7132_c184))
        );
        // A plain attach of a persistent name gets it.
        assert_eq!(
            r.attach("secrets.tdb", DbKind::Volatile),
            Ok(Attached::Existing(0x7132_c184))
        );
        let Attached::New(info) = r.attach("brlock.tdb", DbKind::Volatile).unwrap() else {
            panic!()
        };
        r.insert(info);
        assert!(matches!(
            r.attach("brlock.tdb", DbKind::Persistent),
            Err(AttachError::KindMismatch { .. })
        ));
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        let r = registry(true);
        for bad in ["", ".", "..", "../x.tdb", "a/b.tdb", "x\0y"] {
            assert_eq!(
                r.attach(bad, DbKind::Volatile),
                Err(AttachError::BadName(bad.to_owned())),
                "{bad:?}"
            );
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(r.attach(&long, DbKind::Volatile).is_err());
    }

    #[test]
    fn leftover_persistent_files_of_this_node_are_found() {
        let r = registry(true);
        let found = r.persistent_leftovers([
            "secrets.tdb.2",
            "registry.tdb.2",
            "secrets.tdb.1",
            "notes.txt",
            "passdb.tdb.2.bak",
        ]);
        assert_eq!(found, vec!["registry.tdb", "secrets.tdb"]);
    }
}
