//! Who is in which room, cached: the answer authorization asks on every message ("is the
//! sender a member?") and fan-out asks for every event ("whose sessions get it?"). It sits
//! beside the store, not in the hub, because authorization must not depend on the live
//! delivery layer; both the router and the hub read it.
//!
//! A room's list is dropped on every membership event (the hub sees them all, local or
//! from other nodes) and re-read after [`TTL`] regardless, so a change made on another node
//! while the cluster bus was down is honoured within seconds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::{RoomId, Store, StoreResult, UserId};

/// How long a room's cached member list is trusted without a membership event.
pub const TTL: Duration = Duration::from_secs(5);
/// Rooms whose members are cached at most.
const MAX_ROOMS: usize = 100_000;

type Cached = (Instant, Arc<[UserId]>);

pub struct Membership {
    store: Arc<dyn Store>,
    rooms: RwLock<HashMap<RoomId, Cached>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").finish_non_exhaustive()
    }
}

impl Membership {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            rooms: RwLock::default(),
        }
    }

    /// Member ids of a room.
    /// The rooms `user` is in (from the store: not cached, for the rarer questions such as
    /// whom a presence change concerns).
    pub async fn rooms_of(&self, user: UserId) -> StoreResult<Vec<RoomId>> {
        self.store.room_ids_of(user).await
    }

    pub async fn members(&self, room: RoomId) -> StoreResult<Arc<[UserId]>> {
        if let Some((read_at, members)) = self.read().get(&room)
            && read_at.elapsed() < TTL
        {
            return Ok(members.clone());
        }
        let members: Arc<[UserId]> = self
            .store
            .room_members(room)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        let mut cache = self.write();
        if cache.len() >= MAX_ROOMS {
            // Bounded: drop what has expired anyway, else start over (entries refill on use).
            cache.retain(|_, (read_at, _)| read_at.elapsed() < TTL);
            if cache.len() >= MAX_ROOMS {
                cache.clear();
            }
        }
        cache.insert(room, (Instant::now(), members.clone()));
        Ok(members)
    }

    /// Forget a room's cached members (after a join or leave).
    pub fn invalidate(&self, room: RoomId) {
        self.write().remove(&room);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<RoomId, Cached>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.rooms
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<RoomId, Cached>> {
        self.rooms
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
