//! Temporary: every Store method answering "not yet implemented", so dependants compile.

macro_rules! stub_store {
    ($ty:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl crate::Store for $ty {
            fn backend(&self) -> &'static str {
                $backend
            }
            async fn ping(&self) -> crate::Result<()> {
                Err(crate::stub::nyi())
            }
            async fn setting_get_or_init(&self, _: &str, _: &str) -> crate::Result<String> {
                Err(crate::stub::nyi())
            }
            async fn create_api_key(
                &self,
                _: crate::NewApiKey,
            ) -> crate::Result<crate::ApiKeyRecord> {
                Err(crate::stub::nyi())
            }
            async fn find_api_key(&self, _: &str) -> crate::Result<Option<crate::ApiKeyRecord>> {
                Err(crate::stub::nyi())
            }
            async fn list_api_keys(
                &self,
                _: crate::ApiKeyKind,
            ) -> crate::Result<Vec<crate::ApiKeyRecord>> {
                Err(crate::stub::nyi())
            }
            async fn revoke_api_key(&self, _: uuid::Uuid) -> crate::Result<()> {
                Err(crate::stub::nyi())
            }
            async fn has_admin_key(&self) -> crate::Result<bool> {
                Err(crate::stub::nyi())
            }
            async fn create_template(
                &self,
                _: &streamspace_proto::api::CreateTemplate,
            ) -> crate::Result<streamspace_proto::api::Template> {
                Err(crate::stub::nyi())
            }
            async fn get_template(
                &self,
                _: &str,
            ) -> crate::Result<streamspace_proto::api::Template> {
                Err(crate::stub::nyi())
            }
            async fn list_templates(&self) -> crate::Result<Vec<streamspace_proto::api::Template>> {
                Err(crate::stub::nyi())
            }
            async fn delete_template(&self, _: &str) -> crate::Result<()> {
                Err(crate::stub::nyi())
            }
            async fn register_agent(&self, _: &crate::AgentRegistration) -> crate::Result<i64> {
                Err(crate::stub::nyi())
            }
            async fn heartbeat_agent(&self, _: &str, _: i64, _: i32) -> crate::Result<bool> {
                Err(crate::stub::nyi())
            }
            async fn agent_disconnected(&self, _: &str, _: i64) -> crate::Result<bool> {
                Err(crate::stub::nyi())
            }
            async fn expire_agents(&self, _: f64) -> crate::Result<Vec<String>> {
                Err(crate::stub::nyi())
            }
            async fn get_agent(&self, _: &str) -> crate::Result<streamspace_proto::api::Agent> {
                Err(crate::stub::nyi())
            }
            async fn list_agents(&self) -> crate::Result<Vec<streamspace_proto::api::Agent>> {
                Err(crate::stub::nyi())
            }
            async fn delete_agent(&self, _: &str) -> crate::Result<()> {
                Err(crate::stub::nyi())
            }
            async fn create_session(
                &self,
                _: &crate::NewSession,
            ) -> crate::Result<(
                streamspace_proto::api::Session,
                streamspace_proto::api::Command,
            )> {
                Err(crate::stub::nyi())
            }
            async fn get_session(
                &self,
                _: uuid::Uuid,
            ) -> crate::Result<streamspace_proto::api::Session> {
                Err(crate::stub::nyi())
            }
            async fn list_sessions(
                &self,
                _: Option<&str>,
            ) -> crate::Result<Vec<streamspace_proto::api::Session>> {
                Err(crate::stub::nyi())
            }
            async fn set_session_state(
                &self,
                _: uuid::Uuid,
                _: streamspace_proto::api::SessionState,
                _: Option<&str>,
                _: Option<&str>,
            ) -> crate::Result<(streamspace_proto::api::Session, bool)> {
                Err(crate::stub::nyi())
            }
            async fn create_session_command(
                &self,
                _: uuid::Uuid,
                _: &[streamspace_proto::api::SessionState],
                _: &crate::NewCommand,
            ) -> crate::Result<streamspace_proto::api::Command> {
                Err(crate::stub::nyi())
            }
            async fn get_command(
                &self,
                _: uuid::Uuid,
            ) -> crate::Result<streamspace_proto::api::Command> {
                Err(crate::stub::nyi())
            }
            async fn list_commands(
                &self,
                _: &streamspace_proto::api::CommandFilter,
            ) -> crate::Result<Vec<streamspace_proto::api::Command>> {
                Err(crate::stub::nyi())
            }
            async fn deliverable_commands(
                &self,
                _: &str,
                _: f64,
                _: i32,
                _: bool,
                _: i64,
            ) -> crate::Result<Vec<streamspace_proto::api::Command>> {
                Err(crate::stub::nyi())
            }
            async fn agents_with_deliverable_commands(
                &self,
                _: f64,
                _: i32,
            ) -> crate::Result<Vec<String>> {
                Err(crate::stub::nyi())
            }
            async fn claim_delivery(
                &self,
                _: uuid::Uuid,
                _: i32,
            ) -> crate::Result<Option<streamspace_proto::api::Command>> {
                Err(crate::stub::nyi())
            }
            async fn ack_command(&self, _: &str, _: uuid::Uuid) -> crate::Result<bool> {
                Err(crate::stub::nyi())
            }
            async fn finish_command(
                &self,
                _: &str,
                _: uuid::Uuid,
                _: &crate::CommandOutcome,
            ) -> crate::Result<(streamspace_proto::api::Command, bool)> {
                Err(crate::stub::nyi())
            }
            async fn fail_stuck_commands(
                &self,
                _: f64,
                _: f64,
                _: f64,
                _: i32,
            ) -> crate::Result<Vec<streamspace_proto::api::Command>> {
                Err(crate::stub::nyi())
            }
            async fn audit(&self, _: &crate::AuditEntry) -> crate::Result<()> {
                Err(crate::stub::nyi())
            }
        }
    };
}

pub(crate) fn nyi() -> crate::StoreError {
    crate::StoreError::Corrupt("not yet implemented".into())
}

pub(crate) use stub_store;
