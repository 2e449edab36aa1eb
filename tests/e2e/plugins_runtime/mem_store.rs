//! An in-memory `Store` for the plugin runtime's tests. Only the plugin key/value and audit
//! methods work, and rooms a test put in `rooms` (observers read the room of an event): the real stores are built and tested elsewhere, and the plugin runtime
//! touches nothing else. Every other method panics, so a test that strays is noticed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use switchboard::store::*;

#[derive(Default)]
pub struct MemStore {
    pub kv: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    pub audit: Mutex<Vec<(String, String, String)>>,
    pub rooms: Mutex<BTreeMap<RoomId, Room>>,
}

impl MemStore {
    pub fn kv_value(&self, plugin: &str, key: &str) -> Option<String> {
        let kv = self.kv.lock().expect("lock");
        kv.get(&(plugin.to_string(), key.to_string()))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn kv_keys_of(&self, plugin: &str) -> Vec<String> {
        let kv = self.kv.lock().expect("lock");
        kv.keys()
            .filter(|(p, _)| p == plugin)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

const UNUSED: &str = "not used by the plugin runtime";

#[async_trait]
impl Store for MemStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    async fn size_bytes(&self) -> StoreResult<Option<u64>> {
        Ok(None)
    }
    async fn count_users(&self) -> StoreResult<i64> {
        unimplemented!("{UNUSED}")
    }
    async fn create_user(&self, _: NewUser) -> StoreResult<User> {
        unimplemented!("{UNUSED}")
    }
    async fn user_by_id(&self, _: UserId) -> StoreResult<Option<User>> {
        unimplemented!("{UNUSED}")
    }
    async fn user_by_name(&self, _: &str) -> StoreResult<Option<(User, Option<String>)>> {
        unimplemented!("{UNUSED}")
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        unimplemented!("{UNUSED}")
    }
    async fn set_user_active(&self, _: UserId, _: bool) -> StoreResult<()> {
        unimplemented!("{UNUSED}")
    }
    async fn set_password_hash(&self, _: UserId, _: &str) -> StoreResult<()> {
        unimplemented!("{UNUSED}")
    }
    async fn create_session(&self, _: &Session) -> StoreResult<()> {
        unimplemented!("{UNUSED}")
    }
    async fn session(&self, _: &str) -> StoreResult<Option<Session>> {
        unimplemented!("{UNUSED}")
    }
    async fn rotate_refresh(&self, _: &str, _: &str, _: &str, _: Millis) -> StoreResult<bool> {
        unimplemented!("{UNUSED}")
    }
    async fn revoke_session(&self, _: &str) -> StoreResult<()> {
        unimplemented!("{UNUSED}")
    }
    async fn revoke_user_sessions(&self, _: UserId) -> StoreResult<Vec<String>> {
        unimplemented!("{UNUSED}")
    }
    async fn create_room(&self, _: NewRoom, _: &[(UserId, Role)]) -> StoreResult<Room> {
        unimplemented!("{UNUSED}")
    }
    async fn direct_room(&self, _: UserId, _: UserId) -> StoreResult<(Room, bool)> {
        unimplemented!("{UNUSED}")
    }
    async fn room(&self, id: RoomId) -> StoreResult<Option<Room>> {
        Ok(self.rooms.lock().expect("lock").get(&id).cloned())
    }
    async fn rooms_for_user(&self, _: UserId) -> StoreResult<Vec<RoomSummary>> {
        unimplemented!("{UNUSED}")
    }
    async fn list_rooms(&self) -> StoreResult<Vec<Room>> {
        unimplemented!("{UNUSED}")
    }
    async fn room_members(&self, _: RoomId) -> StoreResult<Vec<Member>> {
        unimplemented!("{UNUSED}")
    }
    async fn member(&self, _: RoomId, _: UserId) -> StoreResult<Option<Member>> {
        unimplemented!("{UNUSED}")
    }
    async fn append_events(&self, _: &[NewEvent]) -> StoreResult<Vec<StoreResult<Appended>>> {
        unimplemented!("{UNUSED}")
    }
    async fn event(&self, _: EventId) -> StoreResult<Option<Event>> {
        unimplemented!("{UNUSED}")
    }
    async fn event_by_client_msg_id(&self, _: UserId, _: &str) -> StoreResult<Option<Event>> {
        unimplemented!("{UNUSED}")
    }
    async fn events(&self, _: RoomId, _: Page, _: u32) -> StoreResult<Vec<Event>> {
        unimplemented!("{UNUSED}")
    }
    async fn set_read_cursor(&self, _: UserId, _: RoomId, _: i64) -> StoreResult<i64> {
        unimplemented!("{UNUSED}")
    }

    async fn kv_get(&self, plugin: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .kv
            .lock()
            .expect("lock")
            .get(&(plugin.to_string(), key.to_string()))
            .cloned())
    }
    async fn kv_put(&self, plugin: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.kv
            .lock()
            .expect("lock")
            .insert((plugin.to_string(), key.to_string()), value.to_vec());
        Ok(())
    }
    async fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<bool> {
        Ok(self
            .kv
            .lock()
            .expect("lock")
            .remove(&(plugin.to_string(), key.to_string()))
            .is_some())
    }
    async fn kv_keys(&self, plugin: &str, prefix: &str, limit: u32) -> StoreResult<Vec<String>> {
        let kv = self.kv.lock().expect("lock");
        Ok(kv
            .keys()
            .filter(|(p, k)| p == plugin && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .take(limit as usize)
            .collect())
    }
    async fn append_audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        _detail: &serde_json::Value,
    ) -> StoreResult<()> {
        self.audit
            .lock()
            .expect("lock")
            .push((actor.into(), action.into(), subject.into()));
        Ok(())
    }
    async fn recent_audit(&self, _: u32) -> StoreResult<Vec<AuditRecord>> {
        unimplemented!("{UNUSED}")
    }
}
