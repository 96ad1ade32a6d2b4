//! Share links and viewers of a session: the client half of `/api/v1/sessions/{id}/shares`,
//! `/api/v1/sessions/{id}/viewers` and `/api/v1/shares/{share_id}/connect`.

use reqwest::Method;
use streamspace_proto::api::{CreateShare, Share, Viewer};
use streamspace_proto::tunnel::ConnectInfo;
use uuid::Uuid;

use crate::{Client, Result};

impl Client {
    /// Makes a share link of session `id`.
    pub async fn create_share(&self, id: Uuid, share: &CreateShare) -> Result<Share> {
        let path = format!("api/v1/sessions/{id}/shares");
        self.send(self.request(Method::POST, &path)?.json(share))
            .await
    }

    /// The share links of session `id`, oldest first (revoked and expired ones too).
    pub async fn list_shares(&self, id: Uuid) -> Result<Vec<Share>> {
        self.all(&format!("api/v1/sessions/{id}/shares"), &[]).await
    }

    /// Revokes a share link; its viewers are closed.
    pub async fn revoke_share(&self, id: Uuid, share_id: Uuid) -> Result<Share> {
        let path = format!("api/v1/sessions/{id}/shares/{share_id}");
        self.send(self.request(Method::DELETE, &path)?).await
    }

    /// A viewer token through share link `share_id`, in the link's mode.
    pub async fn connect_share(&self, share_id: Uuid) -> Result<ConnectInfo> {
        let path = format!("api/v1/shares/{share_id}/connect");
        self.send(self.request(Method::POST, &path)?).await
    }

    /// Who watches session `id` (on the replica that answers).
    pub async fn list_viewers(&self, id: Uuid) -> Result<Vec<Viewer>> {
        self.all(&format!("api/v1/sessions/{id}/viewers"), &[])
            .await
    }

    /// Disconnects viewer `viewer_id` of session `id`.
    pub async fn disconnect_viewer(&self, id: Uuid, viewer_id: Uuid) -> Result<()> {
        let path = format!("api/v1/sessions/{id}/viewers/{viewer_id}");
        self.send_unit(self.request(Method::DELETE, &path)?).await
    }
}
