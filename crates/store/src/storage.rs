//! [`Storage`], the engine's seam, implemented by the sled store: each method is the
//! store's own.

use steerfeed_core::storage::{
    DamageReport, IngestReport, ItemAsk, ItemGrant, Logged, Preferences, Relation, Revocation,
    ServedPage, Storage,
};
use steerfeed_core::{
    ConsentScope, Constraints, Embedding, Event, ParentalControls, Result, Timestamp, User, UserId,
    Video, VideoId, Viewer, WellbeingState,
};

use crate::Store;

impl Storage for Store {
    fn upsert_videos(&self, videos: &[Video]) -> Result<()> {
        Store::upsert_videos(self, videos)
    }

    fn delete_video(&self, id: &VideoId) -> Result<()> {
        Store::delete_video(self, id)
    }

    fn intern_video(&self, id: &VideoId) -> VideoId {
        Store::intern_video(self, id)
    }

    fn catalog_version(&self) -> u64 {
        Store::catalog_version(self)
    }

    fn catalog_changes_since(&self, version: u64) -> Result<Option<Vec<VideoId>>> {
        Store::catalog_changes_since(self, version)
    }

    fn trim_catalog_log(&self, version: u64) -> Result<()> {
        Store::trim_catalog_log(self, version)
    }

    fn for_each_embedding(
        &self,
        f: &mut dyn FnMut(VideoId, Embedding, Vec<steerfeed_core::TopicId>) -> Result<()>,
    ) -> Result<()> {
        Store::for_each_embedding(self, f)
    }

    fn video_count(&self) -> u64 {
        Store::video_count(self)
    }

    fn user_count(&self) -> Result<u64> {
        Store::user_count(self)
    }

    fn upsert_user(&self, user: &User) -> Result<()> {
        Store::upsert_user(self, user)
    }

    fn user(&self, id: &UserId) -> Result<Option<User>> {
        Store::user(self, id)
    }

    fn set_relation(&self, a: &UserId, b: &UserId, relation: Relation, on: bool) -> Result<()> {
        match (relation, on) {
            (Relation::Follow, true) => self.follow(a, b),
            (Relation::Follow, false) => self.unfollow(a, b),
            (Relation::Block, true) => self.block(a, b),
            (Relation::Block, false) => self.unblock(a, b),
            (Relation::Mute, true) => self.mute(a, b),
            (Relation::Mute, false) => self.unmute(a, b),
        }
    }

    fn set_relations(&self, items: &[(UserId, UserId, Relation, bool)]) -> Result<()> {
        Store::set_relations(self, items)
    }

    fn set_consent(&self, person: &UserId, scope: ConsentScope, approved: &[UserId]) -> Result<()> {
        Store::set_consent(self, person, scope, approved)
    }

    fn revoke_consent(&self, person: &UserId, revocation: &Revocation) -> Result<()> {
        Store::revoke_consent(self, person, revocation)
    }

    fn set_parental_controls(&self, user: &UserId, controls: &ParentalControls) -> Result<()> {
        Store::set_parental_controls(self, user, controls)
    }

    fn parental_controls(&self, user: &UserId) -> Result<ParentalControls> {
        Store::parental_controls(self, user)
    }

    fn set_preferences(&self, user: &UserId, text: &str, constraints: &Constraints) -> Result<()> {
        Store::set_preferences(self, user, text, constraints)
    }

    fn preferences(&self, user: &UserId) -> Result<Option<Preferences>> {
        Store::preferences(self, user)
    }

    fn clear_preferences(&self, user: &UserId) -> Result<()> {
        Store::clear_preferences(self, user)
    }

    fn active_constraints(&self, user: &UserId, now: Timestamp) -> Result<Constraints> {
        Store::active_constraints(self, user, now)
    }

    fn wellbeing(&self, user: &UserId, now: Timestamp) -> Result<WellbeingState> {
        Store::wellbeing(self, user, now)
    }

    fn load_viewer(&self, user: &UserId, now: Timestamp) -> Result<Viewer> {
        Store::load_viewer(self, user, now)
    }

    fn interest(&self, user: &UserId) -> Result<Option<Embedding>> {
        Store::interest(self, user)
    }

    fn seen(&self, user: &UserId) -> Result<Vec<(VideoId, Timestamp)>> {
        Store::seen(self, user)
    }

    fn record_page(&self, user: &UserId, page: &ServedPage<'_>, now: Timestamp) -> Result<()> {
        Store::record_page(self, user, page, now)
    }
    fn for_each_impression(
        &self,
        since: Timestamp,
        f: &mut dyn FnMut(steerfeed_core::LoggedPage) -> Result<()>,
    ) -> Result<()> {
        Store::for_each_impression(self, since, f)
    }

    fn ingest_events(&self, events: &[Event]) -> Result<(IngestReport, Logged)> {
        Store::ingest_events_logged(self, events)
    }

    fn event_count(&self) -> u64 {
        Store::event_count(self)
    }

    fn for_each_event(&self, from: u64, f: &mut dyn FnMut(u64, Event) -> Result<()>) -> Result<()> {
        Store::for_each_event(self, from, f)
    }

    fn erase_user(
        &self,
        user: &UserId,
        own_videos: steerfeed_core::OwnVideos,
    ) -> Result<steerfeed_core::ErasureReport> {
        let report = Store::erase_user(self, user, own_videos)?;
        self.inner.served().forget(user);
        Ok(report)
    }

    fn reserve_items(&self, user: &UserId, ask: ItemAsk) -> Result<ItemGrant> {
        Ok(self.inner.served().reserve(user, ask))
    }

    fn release_items(&self, user: &UserId, grant: &ItemGrant, unused: u32) -> Result<()> {
        self.inner.served().release(user, grant, unused);
        Ok(())
    }

    fn erased(&self) -> Result<Vec<UserId>> {
        Ok(Store::erasures(self).into_iter().map(|e| e.user).collect())
    }

    fn account_records(&self, user: &UserId) -> Result<Vec<steerfeed_core::Record>> {
        Store::account_records(self, user)
    }

    fn export_user(&self, user: &UserId, now: Timestamp) -> Result<Vec<steerfeed_core::Record>> {
        Store::export_user(self, user, now)
    }

    fn for_each_record(
        &self,
        kinds: &[steerfeed_core::RecordKind],
        embeddings: bool,
        f: &mut dyn FnMut(steerfeed_core::Record) -> Result<()>,
    ) -> Result<()> {
        Store::for_each_record(self, kinds, embeddings, f)
    }

    fn copy_to(
        &self,
        dest: &std::path::Path,
        erasures: &std::path::Path,
    ) -> Result<steerfeed_core::storage::CopyInfo> {
        Store::copy_to(self, dest, erasures)
    }

    fn flush(&self) -> Result<()> {
        Store::flush(self)
    }

    fn is_warm(&self) -> bool {
        Store::is_warm(self)
    }

    fn damage(&self) -> DamageReport {
        Store::damage(self)
    }
}
