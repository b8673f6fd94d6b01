//! One index tree as the store reads it: sled's, when this process holds the store (or a
//! private copy of a read-only store's index), or the holder's, asked over its socket
//! ([`crate::serve`]). Writes need the store held.

use std::sync::Arc;

use sled::IVec;

use crate::Error;
use crate::serve::Client;

pub(crate) enum Tree {
    Own(sled::Tree),
    Served {
        client: Arc<Client>,
        name: &'static str,
    },
}

type Entries<'a> = Box<dyn Iterator<Item = Result<(IVec, IVec), Error>> + 'a>;

impl Tree {
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>, Error> {
        match self {
            Tree::Own(t) => Ok(t.get(key)?),
            Tree::Served { client, name } => Ok(client.get(name, key.as_ref())?.map(IVec::from)),
        }
    }

    pub(crate) fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        Ok(self.get(key)?.is_some())
    }

    pub(crate) fn iter(&self) -> Entries<'_> {
        self.scan_prefix([])
    }

    pub(crate) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Entries<'_> {
        match self {
            Tree::Own(t) => Box::new(t.scan_prefix(prefix).map(|r| r.map_err(Error::from))),
            Tree::Served { client, name } => match client.scan(name, prefix.as_ref()) {
                Ok(entries) => Box::new(
                    entries
                        .into_iter()
                        .map(|(k, v)| Ok((IVec::from(k), IVec::from(v)))),
                ),
                Err(e) => Box::new(std::iter::once(Err(e))),
            },
        }
    }

    /// The sled tree, to write or to use in a transaction.
    pub(crate) fn own(&self) -> Result<&sled::Tree, Error> {
        match self {
            Tree::Own(t) => Ok(t),
            Tree::Served { .. } => Err(Error::ReadOnly),
        }
    }

    pub(crate) fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<IVec>,
    ) -> Result<(), Error> {
        self.own()?.insert(key, value)?;
        Ok(())
    }

    pub(crate) fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>, Error> {
        Ok(self.own()?.remove(key)?)
    }
}
